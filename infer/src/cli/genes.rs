//! `infer genes`: nearest genes and predicted gene sets from a gene2vec model.

use anyhow::{Context, Result, bail};
use infer::runtime::{Options, Session};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub m: super::ModelArgs,
    /// Gene whose nearest genes (cosine similarity of embeddings) to list.
    #[arg(long, required_unless_present = "sets")]
    pub similar: Option<String>,
    /// Gene whose predicted gene sets (probabilities) to list.
    #[arg(long)]
    pub sets: Option<String>,
    /// How many to list (default 20 genes, 10 sets).
    #[arg(long)]
    pub top: Option<usize>,
    /// GMT files (e.g. the training ones): each neighbour of --similar also lists how many of
    /// these sets it shares with the gene, and the smallest of them.
    #[arg(long, num_args = 1.., requires = "similar")]
    pub gmt: Vec<std::path::PathBuf>,
}

/// Nearest genes and predicted gene sets from an exported gene2vec model (no training files needed).
pub fn run(a: Args) -> Result<()> {
    let (model, similar, sets, top, backend, threads) =
        (a.m.model.as_path(), a.similar.as_deref(), a.sets.as_deref(), a.top, a.m.backend, a.m.threads);
    use infer::data::gmt::find_gene;
    use infer::runtime::Value;
    let card = infer::read_card(model)?;
    card.require_family("a gene embedding", &[onnx_format::Family::Gene2vec]).map_err(|e| infer::Error::card(model, e))?;
    let n = card.genes.len();
    // each query computes only its own output (the embedding lookup skips the genes × sets layer)
    let session =
        |output: &str| Session::from_file(model, backend, &Options { outputs: vec![output.into()], threads, ..Default::default() });
    let lookup = |name: &str| find_gene(name, &card.genes).with_context(|| model.display().to_string());
    if let Some(name) = similar {
        let i = lookup(name)?;
        let gene_sets = if a.gmt.is_empty() {
            None
        } else {
            let (sets, _) = infer::data::gmt::read_gmts(&a.gmt, infer::data::gmt::DuplicateSets::Rename)?;
            Some(sets)
        };
        let mut session = session("embedding")?;
        let (d, sims) = infer::genes::nearest(&mut session, n, i).with_context(|| model.display().to_string())?;
        println!("# genes nearest to {} by cosine similarity ({n} genes, dim {d}, {})", card.genes[i], session.provider);
        match &gene_sets {
            None => println!("rank	gene	cosine"),
            Some(_) => println!("rank	gene	cosine	shared_sets	smallest_shared_set"),
        }
        let own: Vec<&infer::data::gmt::GeneSet> =
            gene_sets.iter().flatten().filter(|s| s.genes.iter().any(|g| g == &card.genes[i])).collect();
        for (r, (c, j)) in sims.iter().take(top.unwrap_or(20)).enumerate() {
            let g = &card.genes[*j];
            match &gene_sets {
                None => println!("{}	{g}	{c:.4}", r + 1),
                Some(_) => {
                    let shared: Vec<&&infer::data::gmt::GeneSet> = own.iter().filter(|s| s.genes.contains(g)).collect();
                    let smallest = shared.iter().min_by_key(|s| s.genes.len()).map(|s| format!("{} ({} genes)", s.name, s.genes.len()));
                    println!("{}	{g}	{c:.4}	{}	{}", r + 1, shared.len(), smallest.unwrap_or_else(|| "-".into()));
                }
            }
        }
    }
    if let Some(name) = sets {
        let i = lookup(name)?;
        let mut session = session("gene_sets")?;
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
