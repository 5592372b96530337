//! The model card as a contract: `infer inspect --json` output validates against the published
//! JSON Schema (docs/model-card.schema.json) with Python's `jsonschema`, `infer inspect --schema`
//! prints that file, and cards from a newer schema or disagreeing with the graph are refused.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn schema_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/model-card.schema.json")
}

#[test]
fn inspect_json_validates_against_the_published_schema() {
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let (spot, card) = spot_model(&["ERBB2", "GAPDH"], 1);
    let spot_path = dir.path().join("spot.onnx");
    write_spot_model(&spot_path, &spot, &card);
    let printed = ok(Command::new(bin("infer")).args(["inspect", "--schema"]));
    let published = std::fs::read_to_string(schema_path()).unwrap();
    assert_eq!(printed.trim(), published.trim(), "docs/model-card.schema.json differs from `infer inspect --schema`");
    for model in [&m.gcn, &m.mlp, &spot_path] {
        let out = Command::new(bin("infer")).args(["inspect", "--json"]).arg(model).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json = dir.path().join("card.json");
        std::fs::write(&json, &out.stdout).unwrap();
        let check = "import json, sys, jsonschema\n\
                     schema = json.load(open(sys.argv[1])); card = json.load(open(sys.argv[2]))\n\
                     jsonschema.Draft202012Validator.check_schema(schema)\n\
                     jsonschema.validate(card, schema, cls=jsonschema.Draft202012Validator)\n\
                     bad = dict(card, family='no-such-family')\n\
                     assert not jsonschema.Draft202012Validator(schema).is_valid(bad)\n\
                     print('valid', card['family'], card['preprocessing']['kind'])";
        let said = ok(Command::new(python()).arg("-c").arg(check).arg(schema_path()).arg(&json));
        assert!(said.contains("valid"), "{said}");
    }
}

#[test]
fn newer_or_inconsistent_cards_are_refused() {
    let m = models();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&m.gcn).unwrap();
    let mut model = onnx_format::decode(&bytes, "gcn").unwrap();
    let entry = model.metadata_props.iter_mut().find(|p| p.key.as_deref() == Some(onnx_format::CARD_KEY)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(entry.value.as_deref().unwrap()).unwrap();
    v["schema_version"] = 99.into();
    entry.value = Some(v.to_string());
    let newer = dir.path().join("newer.onnx");
    std::fs::write(&newer, onnx_format::encode(&model)).unwrap();
    let err = fails(Command::new(bin("infer")).args(["inspect"]).arg(&newer));
    assert!(err.contains("schema 99 is newer than this build reads"), "{err}");
    // a card whose input shape is not the graph's
    let other = dir.path().join("shape.onnx");
    rewrite_card(&m.gcn, &other, |_| {});
    let mut model = onnx_format::decode(&std::fs::read(&other).unwrap(), "o").unwrap();
    let entry = model.metadata_props.iter_mut().find(|p| p.key.as_deref() == Some(onnx_format::CARD_KEY)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(entry.value.as_deref().unwrap()).unwrap();
    v["inputs"][0]["shape"][1] = "7".into();
    entry.value = Some(v.to_string());
    std::fs::write(&other, onnx_format::encode(&model)).unwrap();
    let (expr, _) = leukemia();
    let out = dir.path().join("never.csv");
    let err = fails(Command::new(bin("infer")).arg("predict").arg("--model").arg(&other).arg("--input").arg(&expr).arg("--out").arg(&out));
    assert!(err.contains("disagrees with the graph"), "{err}");
    assert!(!out.exists());
}
