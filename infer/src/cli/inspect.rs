//! `infer inspect`: the model card and a graph summary.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required_unless_present = "schema")]
    pub model: Option<PathBuf>,
    /// Print the card as JSON (checked against the card schema and the graph).
    #[arg(long)]
    pub json: bool,
    /// Print the JSON Schema of model cards (docs/model-card.schema.json) and exit.
    #[arg(long, conflicts_with = "json")]
    pub schema: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.schema {
        println!("{}", serde_json::to_string_pretty(&onnx_format::ModelCard::json_schema())?);
        return Ok(());
    }
    inspect(&a.model.context("a model path is required")?, a.json)
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
    println!(
        "model:        {p} ({:.1} MB, IR {}, opset {opset}, {} nodes, {} initializers)",
        bytes.len() as f64 / 1e6,
        model.ir_version.unwrap_or(0),
        graph.node.len(),
        graph.initializer.len()
    );
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
