//! `infer`: run exported models without burn.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use infer::classify::{check_family, classify};
use infer::data::{ReadOptions, read_expression};
use infer::runtime::{Backend, Options, Session};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "infer", version, about = "Run exported bioedge models with tract or ONNX Runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the model card and graph summary of an exported model.
    Inspect {
        #[arg(required_unless_present = "schema")]
        model: Option<PathBuf>,
        /// Print the card as JSON (checked against the card schema and the graph).
        #[arg(long)]
        json: bool,
        /// Print the JSON Schema of model cards (docs/model-card.schema.json) and exit.
        #[arg(long, conflicts_with = "json")]
        schema: bool,
    },
    /// Class probabilities per sample for an expression file (GSEA txt/gct + cls, CSV/TSV, HDF5, h5ad).
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// GSEA .cls labels for the input (optional; only used to report accuracy).
        #[arg(long)]
        cls: Option<PathBuf>,
        /// Label column (CSV/TSV) or obs column (h5ad) to report accuracy against.
        #[arg(long)]
        label_column: Option<String>,
        #[arg(long, default_value = "tract")]
        backend: Backend,
        /// ONNX Runtime with the CUDA execution provider (build with feature `cuda`).
        #[arg(long)]
        cuda: bool,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Cell types for single-cell data (h5ad or any expression format): PCA and kNN graph as the model card says.
    Cells {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// obs column (h5ad) or label column with known types, to report accuracy.
        #[arg(long)]
        label_column: Option<String>,
        #[arg(long, default_value = "tract")]
        backend: Backend,
        #[arg(long)]
        out: PathBuf,
    },
    /// Node classes for a graph: sparse features (`node feature value` lines) + an edge list.
    Nodes {
        #[arg(long)]
        model: PathBuf,
        /// Node features as `row col value` TSV (header first), optionally gzipped.
        #[arg(long)]
        features: PathBuf,
        /// Edges as `src dst` TSV (header first).
        #[arg(long)]
        edges: PathBuf,
        /// Number of nodes (default: largest feature row + 1).
        #[arg(long)]
        num_nodes: Option<usize>,
        /// Treat edges as directed (default: add the reverse of every edge).
        #[arg(long)]
        directed: bool,
        #[arg(long, default_value = "tract")]
        backend: Backend,
        #[arg(long)]
        out: PathBuf,
    },
    /// Task probabilities (e.g. Tox21) for molecules given as SMILES, with a `mol-graphconv` model.
    Mol {
        #[arg(long)]
        model: PathBuf,
        /// SMILES strings (repeatable).
        #[arg(long, required_unless_present = "input", conflicts_with = "input")]
        smiles: Vec<String>,
        /// CSV/TSV with a SMILES column.
        #[arg(long)]
        input: Option<PathBuf>,
        /// SMILES column of --input (default: `smiles`, else the first column).
        #[arg(long)]
        smiles_column: Option<String>,
        #[arg(long, default_value = "tract")]
        backend: Backend,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Gene embeddings (gene2vec): the genes most similar to a gene, or its predicted gene sets.
    Genes {
        #[arg(long)]
        model: PathBuf,
        /// Gene whose nearest genes (cosine similarity of embeddings) to list.
        #[arg(long, required_unless_present = "sets")]
        similar: Option<String>,
        /// Gene whose predicted gene sets (probabilities) to list.
        #[arg(long)]
        sets: Option<String>,
        /// How many to list (default 20 genes, 10 sets).
        #[arg(long)]
        top: Option<usize>,
        #[arg(long, default_value = "tract")]
        backend: Backend,
    },
    /// Predicted expression over a whole histology image: at spot-file positions or on a grid over tissue.
    Slide {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        image: PathBuf,
        /// HER2ST-style spot file (x y ... pixel_x pixel_y [selected]).
        #[arg(long, conflicts_with = "grid", required_unless_present = "grid")]
        spots: Option<PathBuf>,
        /// Regular grid over tissue (step = patch side).
        #[arg(long)]
        grid: bool,
        #[arg(long, default_value = "tract")]
        backend: Backend,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Patch side in pixels (default: the card's preprocessing.patch_side_um at the slide's recorded
        /// microns per pixel when both exist, else the card's preprocessing.patch_side_px).
        #[arg(long)]
        patch_side: Option<f32>,
        #[arg(long)]
        out: PathBuf,
        /// Gene to draw a heatmap PNG for (repeatable).
        #[arg(long)]
        heatmap: Vec<String>,
        #[arg(long)]
        heatmap_dir: Option<PathBuf>,
        /// How to read the image: auto (OpenSlide for vendor formats when built with it, the
        /// tiled-TIFF reader for tiled/pyramidal TIFFs, else decode whole), tiff, openslide, image.
        #[arg(long, default_value = "auto")]
        reader: infer::wsi::Reader,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Slide { model, image, spots, grid: _, backend, batch, patch_side, out, heatmap, heatmap_dir, reader } => {
            let r = infer::slide::run(&infer::slide::SlideOptions { model, image, spots, backend, batch, patch_side, out, heatmaps: heatmap, heatmap_dir, reader })?;
            eprintln!("{} spots × {} genes ({}×{} image, patch {} px) in {:.1}s ({:.1} spots/s, {}); wrote {}", r.spots, r.genes, r.width, r.height, r.patch_side, r.predict_s, r.spots as f64 / r.predict_s.max(1e-9), r.provider, r.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
            Ok(())
        }
        Cmd::Inspect { schema: true, .. } => {
            println!("{}", serde_json::to_string_pretty(&onnx_format::ModelCard::json_schema())?);
            Ok(())
        }
        Cmd::Inspect { model, json, .. } => inspect(&model.expect("clap requires a model"), json),
        Cmd::Mol { model, smiles, input, smiles_column, backend, batch, out } => mol(model, smiles, input, smiles_column, backend, batch, out),
        Cmd::Cells { model, input, label_column, backend, out } => {
            let card = infer::read_card(&model)?;
            card.require::<onnx_format::card::Cells>().map_err(|e| infer::Error::card(&model, e))?;
            let m = read_expression(&input, &ReadOptions { label_column, cls: None })?;
            let mut session = Session::from_file(&model, backend, &Options::default())?;
            let (probs, alignment) = infer::cells::classify_cells(&mut session, &card, &model, &m, &input)?;
            let c = infer::classify::Classification { samples: m.samples.clone(), classes: card.classes.clone(), probabilities: probs, alignment };
            eprintln!("{}: {} cells; {}; provider {}", input.display(), c.samples.len(), c.alignment.summary(), session.provider);
            report_accuracy(&c, m.labels.as_deref());
            onnx_format::write_atomic(&out, c.to_csv().as_bytes()).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Nodes { model, features, edges, num_nodes, directed, backend, out } => nodes(model, features, edges, num_nodes, directed, backend, out),
        Cmd::Genes { model, similar, sets, top, backend } => genes(&model, similar.as_deref(), sets.as_deref(), top, backend),
        Cmd::Predict { model, input, cls, label_column, backend, cuda, batch, out } => {
            let card = infer::read_card(&model)?;
            check_family(&card, &model)?;
            let opts = ReadOptions { label_column, cls };
            let m = read_expression(&input, &opts)?;
            let mut session = Session::from_file(&model, backend, &Options { cuda, threads: 0 })?;
            let c = classify(&mut session, &card, &m, &input, batch)?;
            eprintln!("{}: {} samples; {}; provider {}", input.display(), c.samples.len(), c.alignment.summary(), session.provider);
            report_accuracy(&c, m.labels.as_deref());
            onnx_format::write_atomic(&out, c.to_csv().as_bytes()).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// Print the accuracy of the predictions against labels read with the input, if any.
fn report_accuracy(c: &infer::classify::Classification, labels: Option<&[String]>) {
    if let Some(labels) = labels {
        let (correct, total) = c.correct(labels);
        eprintln!("accuracy against the input's labels: {:.3} ({correct}/{total})", correct as f64 / total as f64);
    }
}

fn nodes(model: PathBuf, features: PathBuf, edges: PathBuf, num_nodes: Option<usize>, directed: bool, backend: Backend, out: PathBuf) -> Result<()> {
    use infer::nodes::{check_node_family, classify_nodes, read_coo_features_opt, read_edges};
    let card = infer::read_card(&model)?;
    check_node_family(&card, &model)?;
    let (x, width, n) = read_coo_features_opt(&features, num_nodes)?;
    let e = read_edges(&edges, n)?;
    let (src, dst) = if directed { e.iter().map(|&(a, b)| (a as i64, b as i64)).unzip() } else { infer::nodes::both_directions(&e) };
    let mut session = Session::from_file(&model, backend, &Options::default())?;
    let probs = classify_nodes(&mut session, &card, &model, &x, n, width, &src, &dst).with_context(|| format!("{} + {}", features.display(), edges.display()))?;
    let k = probs.len() / n;
    let classes: Vec<String> = (0..k).map(|c| card.classes.get(c).cloned().unwrap_or_else(|| c.to_string())).collect();
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let csv = infer::classify::probabilities_csv("node", &ids, &classes, &probs);
    onnx_format::write_atomic(&out, csv.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("{n} nodes, {} directed edges; provider {}; wrote {}", src.len(), session.provider, out.display());
    Ok(())
}

fn mol(model: PathBuf, smiles: Vec<String>, input: Option<PathBuf>, smiles_column: Option<String>, backend: Backend, batch: usize, out: PathBuf) -> Result<()> {
    let card = infer::read_card(&model)?;
    infer::mol::check_family(&card, &model)?;
    let smiles = match &input {
        Some(p) => {
            let t = infer::mol::Table::read(p)?;
            let c = infer::mol::smiles_column(&t, smiles_column.as_deref(), p)?;
            (0..t.rows.len()).map(|r| t.get(r, c).to_string()).collect()
        }
        None => smiles,
    };
    if smiles.is_empty() {
        bail!("no molecules to score");
    }
    let mut session = Session::from_file(&model, backend, &Options::default())?;
    let t0 = std::time::Instant::now();
    let scored = infer::mol::score(&mut session, &card.classes, &smiles, batch)?;
    let secs = t0.elapsed().as_secs_f64();
    for e in scored.errors.iter().take(20) {
        eprintln!("skipped {e}");
    }
    if scored.errors.len() > 20 {
        eprintln!("... and {} more rejected SMILES (see the `error` column)", scored.errors.len() - 20);
    }
    if scored.num_scored() == 0 {
        bail!("none of the {} SMILES could be read; nothing written", smiles.len());
    }
    onnx_format::write_atomic(&out, scored.to_csv().as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{} molecules scored, {} rejected, {:.0} molecules/s (featurize + predict, {}); wrote {}",
        scored.num_scored(), scored.errors.len(), smiles.len() as f64 / secs, session.provider, out.display()
    );
    Ok(())
}

/// Nearest genes and predicted gene sets from an exported gene2vec model (no training files needed).
fn genes(model: &std::path::Path, similar: Option<&str>, sets: Option<&str>, top: Option<usize>, backend: Backend) -> Result<()> {
    use infer::data::gmt::find_gene;
    use infer::runtime::Value;
    let card = infer::read_card(model)?;
    card.require_family("a gene embedding", &[onnx_format::Family::Gene2vec]).map_err(|e| infer::Error::card(model, e))?;
    let n = card.genes.len();
    let mut session = Session::from_file(model, backend, &Options::default())?;
    let lookup = |name: &str| find_gene(name, &card.genes).with_context(|| model.display().to_string());
    if let Some(name) = similar {
        let i = lookup(name)?;
        let (d, sims) = infer::genes::nearest(&mut session, n, i).with_context(|| model.display().to_string())?;
        println!("# genes nearest to {} by cosine similarity ({n} genes, dim {d}, {})", card.genes[i], session.provider);
        println!("rank	gene	cosine");
        for (r, (c, j)) in sims.iter().take(top.unwrap_or(20)).enumerate() {
            println!("{}	{}	{c:.4}", r + 1, card.genes[*j]);
        }
    }
    if let Some(name) = sets {
        let i = lookup(name)?;
        let p = session.run_output(&[Value::i64(&[1], vec![i as i64])], "gene_sets")?.into_f32()?;
        if p.len() != card.classes.len() {
            bail!("{}: `gene_sets` gave {} values, the card names {} sets", model.display(), p.len(), card.classes.len());
        }
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        println!("# gene sets predicted for {} ({} sets, {})", card.genes[i], p.len(), session.provider);
        println!("rank	gene_set	probability");
        for (r, &s) in order.iter().take(top.unwrap_or(10)).enumerate() {
            println!("{}	{}	{:.4}", r + 1, card.classes[s], p[s]);
        }
    }
    Ok(())
}

fn inspect(path: &PathBuf, json: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let p = path.display().to_string();
    let model = onnx_format::decode(&bytes, &p)?;
    let card = onnx_format::card_of(&model, &p)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&card)?);
        return Ok(());
    }
    let Some(graph) = model.graph.as_ref() else { bail!("{p}: model has no graph") };
    let opset = model.opset_import.iter().map(|o| o.version.unwrap_or(0)).max().unwrap_or(0);
    println!("model:        {p} ({:.1} MB, IR {}, opset {opset}, {} nodes, {} initializers)", bytes.len() as f64 / 1e6, model.ir_version.unwrap_or(0), graph.node.len(), graph.initializer.len());
    println!("family:       {} (card schema {})", card.family, card.schema_version);
    println!("description:  {}", card.description);
    for (kind, specs) in [("input", &card.inputs), ("output", &card.outputs)] {
        for s in specs {
            println!("{kind:<13} {} [{}] {}: {}", s.name, s.shape.join(", "), s.dtype, s.meaning);
        }
    }
    if !card.genes.is_empty() {
        let head: Vec<&str> = card.genes.iter().take(8).map(|s| s.as_str()).collect();
        println!("genes:        {} ({} ...)", card.genes.len(), head.join(", "));
    }
    if !card.classes.is_empty() {
        println!("classes:      {}", card.classes.join(", "));
    }
    println!("preprocess:   {}", serde_json::to_string(&card.preprocessing)?);
    println!("architecture: {}", card.architecture);
    println!("training:     {}", card.training);
    for (k, v) in &card.metrics {
        println!("metric        {k} = {v:.4}");
    }
    for (k, v) in &card.tools {
        println!("tool          {k} {v}");
    }
    Ok(())
}
