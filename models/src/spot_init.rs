//! Bring-your-own weights for the spot model: seed a [`SpotModel`] from a PyTorch `.pt`/`.pth`
//! state dict, a `.safetensors` file, a burnpack `.bpk` checkpoint or the initializers of an ONNX
//! file, before training. Loading only some tensors (typically the stem and the patch conv of a
//! pretrained encoder) is the normal case: the rest stays at random init, and the report says
//! which is which.
//!
//! File tensors are matched to the model's module paths (`stem.0.conv.weight`,
//! `stem.0.norm.gamma`, `patch.weight`, `blocks.1.q.weight`, ...) after the user's regex
//! renames. PyTorch-layout files (`.pt`, safetensors not written by burn, ONNX not written by this
//! toolchain) go through burn-store's PyTorch adapter: LayerNorm `weight`/`bias` become
//! `gamma`/`beta` and Linear weights are transposed. Our own ONNX exports name each initializer
//! after its module (`stem0.weight_3`, `block1.q.weight_40`); those names are mapped back after
//! the user's renames (an ensemble's members are prefixed `m0.`, `m1.`, ...: `^m0\.=` picks one).

use crate::spot::SpotModel;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, BurnpackStore, ChainAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, bridge,
};
use burn::tensor::TensorData;
use onnx_format::pb::tensor_proto::{DataLocation, DataType};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// Producer name of this toolchain's ONNX exports (their initializer names are mapped back).
const OUR_PRODUCER: &str = "bioedge-train";

/// File formats [`load_init`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PyTorch `torch.save` file (`.pt`, `.pth`): a state dict.
    Pytorch,
    /// safetensors file.
    Safetensors,
    /// burn's burnpack checkpoint (`.bpk`, what `train` saves beside its ONNX).
    Burnpack,
    /// The initializers of an ONNX model.
    Onnx,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Pytorch => "PyTorch",
            Format::Safetensors => "safetensors",
            Format::Burnpack => "burnpack",
            Format::Onnx => "ONNX",
        })
    }
}

/// How the file lays out its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// PyTorch for `.pt`, for safetensors not written by burn and for ONNX not written by this
    /// toolchain; burn otherwise.
    #[default]
    Auto,
    /// PyTorch: LayerNorm `weight`/`bias`, Linear weights `[out, in]`.
    Pytorch,
    /// burn: LayerNorm `gamma`/`beta`, Linear weights `[in, out]`.
    Burn,
}

/// Options of [`load_init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Regex renames of the file's tensor names, applied in order (`$1` refers to groups), e.g.
    /// `(r"^encoder\.(\d+)\.", "stem.$1.")`. See [`parse_remap`].
    pub remap: Vec<(String, String)>,
    /// Accept a file that covers only some of the model's tensors (default). When false, every
    /// model tensor must be in the file.
    pub allow_partial: bool,
    /// Weight layout of the file.
    pub layout: Layout,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self { remap: Vec::new(), allow_partial: true, layout: Layout::Auto }
    }
}

/// What [`load_init`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct InitReport {
    /// Format the file was read as.
    pub format: Format,
    /// Whether PyTorch names and layouts were converted.
    pub pytorch_layout: bool,
    /// Model tensors set from the file (module paths).
    pub loaded: Vec<String>,
    /// Model tensors left at their random init.
    pub random_init: Vec<String>,
    /// File tensors (after renaming) that match no model tensor.
    pub unused: Vec<String>,
    /// Number of scalar weights loaded.
    pub loaded_params: usize,
    /// Number of scalar weights of the model.
    pub total_params: usize,
}

/// `stem (8), patch (2)`: tensor counts by top-level module, in first-seen order.
fn by_module(names: &[String]) -> String {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for n in names {
        let top = n.split('.').next().unwrap_or(n);
        match groups.iter_mut().find(|(g, _)| *g == top) {
            Some((_, c)) => *c += 1,
            None => groups.push((top, 1)),
        }
    }
    groups.iter().map(|(g, c)| format!("{g} ({c})")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for InitReport {
    /// One line: counts, then tensors by top-level module (`stem (8), patch (2)`), then up to 8
    /// unused file tensors by name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.loaded.len() + self.random_init.len();
        write!(
            f,
            "loaded {} of {n} tensors ({} of {} weights) from {}{}: {}",
            self.loaded.len(),
            self.loaded_params,
            self.total_params,
            self.format,
            if self.pytorch_layout { " (PyTorch layout)" } else { "" },
            by_module(&self.loaded)
        )?;
        if !self.random_init.is_empty() {
            write!(f, "; random init: {}", by_module(&self.random_init))?;
        }
        if !self.unused.is_empty() {
            let more = if self.unused.len() > 8 { format!(", ... ({} in all)", self.unused.len()) } else { String::new() };
            write!(f, "; unused in the file: {}{more}", self.unused[..self.unused.len().min(8)].join(", "))?;
        }
        Ok(())
    }
}

/// One `FROM=TO` rename (the CLI's `--init-remap`): a regex over the file's tensor names and
/// its replacement, split at the first `=`.
pub fn parse_remap(s: &str) -> crate::Result<(String, String)> {
    let (from, to) =
        s.split_once('=').ok_or_else(|| crate::Error::Input(format!("remap `{s}`: expected FROM=TO (a regex and its replacement)")))?;
    if from.is_empty() {
        return Err(crate::Error::Input(format!("remap `{s}`: empty pattern")));
    }
    remapper(&[(from.to_string(), to.to_string())])?;
    Ok((from.to_string(), to.to_string()))
}

fn remapper(pairs: &[(String, String)]) -> crate::Result<KeyRemapper> {
    pairs.iter().try_fold(KeyRemapper::new(), |r, (from, to)| {
        r.add_pattern(from, to).map_err(|e| crate::Error::Input(format!("remap pattern `{from}`: {e}")))
    })
}

fn store_err(path: &Path, e: impl fmt::Display) -> crate::Error {
    crate::Error::Store(format!("{}: {e}", path.display()))
}

/// The format of `path`: by extension (`.pt`/`.pth`, `.safetensors`, `.bpk`, `.onnx`), else by
/// its first bytes (zip or pickle, safetensors header, burnpack magic).
pub fn detect_format(path: &Path) -> crate::Result<Format> {
    let mut head = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(16).read_to_end(&mut head)).map_err(|e| store_err(path, e))?;
    if head.is_empty() {
        return Err(store_err(path, "empty file"));
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("pt" | "pth") => return Ok(Format::Pytorch),
        Some("safetensors") => return Ok(Format::Safetensors),
        Some("bpk") => return Ok(Format::Burnpack),
        Some("onnx") => return Ok(Format::Onnx),
        _ => {}
    }
    if head.starts_with(b"PK\x03\x04") || head[0] == 0x80 {
        Ok(Format::Pytorch)
    } else if head.starts_with(b"NRUB") {
        Ok(Format::Burnpack)
    } else if head.len() > 8 && head[8] == b'{' {
        Ok(Format::Safetensors)
    } else {
        Err(store_err(path, "unknown weight format (expected .pt/.pth, .safetensors, .bpk or .onnx)"))
    }
}

/// Set the tensors of `model` found in the weight file at `path` (see the module docs), leaving
/// the others at their init. Errors, with the model dropped, when the file is unreadable, when
/// no tensor matched, when a matched tensor has the wrong shape, or (without
/// [`InitOptions::allow_partial`]) when some model tensor is not in the file.
pub fn load_init(model: SpotModel, path: &Path, opts: &InitOptions) -> crate::Result<(SpotModel, InitReport)> {
    let remap = remapper(&opts.remap)?;
    let format = detect_format(path)?;
    let (tensors, auto_pytorch, ours) = read_tensors(path, format)?;
    let pytorch_layout = match opts.layout {
        Layout::Auto => auto_pytorch,
        Layout::Pytorch => true,
        Layout::Burn => false,
    };
    // new name → name in the file, for messages
    let (mut tensors, renames) = remap.remap(tensors);
    let mut source: BTreeMap<String, String> = renames.into_iter().collect();
    if ours {
        // our ONNX names, suffix dropped (`stem0.weight`), after the user's renames (which may
        // drop an ensemble member's prefix): to module paths
        for t in &mut tensors {
            let path = spot_path(&t.name);
            if let Some(orig) = source.remove(&t.name) {
                source.insert(path.clone(), orig);
            }
            t.name = path;
        }
    }

    let model_tensors = model.collect(None, None, true);
    let shapes: BTreeMap<String, Vec<usize>> = model_tensors.iter().map(|t| (t.name.clone(), t.shape.to_vec())).collect();
    let target_dtype = model_tensors.first().map(|t| t.dtype).ok_or_else(|| crate::Error::Input("model has no tensors".into()))?;
    let mut seen = BTreeMap::new();
    for t in &tensors {
        if let Some(other) = seen.insert(t.name.clone(), source_name(&source, &t.name))
            && shapes.contains_key(&t.name)
        {
            return Err(store_err(
                path,
                format!("file tensors `{other}` and `{}` both map to model tensor `{}`", source_name(&source, &t.name), t.name),
            ));
        }
    }

    let cast = FloatCastAdapter::to(target_dtype);
    let adapter: Box<dyn ModuleAdapter> =
        if pytorch_layout { Box::new(ChainAdapter::new(PyTorchToBurnAdapter, cast)) } else { Box::new(cast) };
    let mut model = model;
    let result = model.apply(tensors, None, Some(adapter), true);

    if !result.errors.is_empty() {
        let msgs: Vec<String> = result.errors.iter().map(|e| describe(e, &source, pytorch_layout)).collect();
        let hint = "; to keep a model tensor at random init (a head for other genes), rename the file's away, e.g. `^head\\.=unused.head.`";
        return Err(store_err(path, msgs.join("; ") + hint));
    }
    if result.applied.is_empty() {
        let file: Vec<&str> = result.unused.iter().take(8).map(String::as_str).collect();
        let want: Vec<&str> = model_tensors.iter().take(8).map(|t| t.name.as_str()).collect();
        let file = if file.is_empty() {
            "none: the file holds no float tensors".to_string()
        } else {
            format!("{}{}", file.join(", "), if result.unused.len() > 8 { ", ..." } else { "" })
        };
        // an ensemble export names its members `m0.`, `m1.`, ...
        let member = ours && result.unused.iter().any(|n| n.starts_with("m0."));
        let hint = if member {
            "pick one ensemble member with the remap `^m0\\.=`"
        } else {
            "rename with a remap such as `^encoder\\.(\\d+)\\.=stem.$1.`"
        };
        return Err(store_err(
            path,
            format!(
                "no tensor of the {format} file matches the model (file, after renames: {file}; model: {}, ...); {hint}",
                want.join(", ")
            ),
        ));
    }
    let random_init: Vec<String> = result.missing.iter().map(|(p, _)| p.clone()).collect();
    if !opts.allow_partial && !random_init.is_empty() {
        return Err(store_err(
            path,
            format!("{} model tensors are not in the file (partial loading is off): {}", random_init.len(), random_init.join(", ")),
        ));
    }
    let numel = |p: &String| shapes.get(p).map_or(0, |s| s.iter().product::<usize>());
    let report = InitReport {
        format,
        pytorch_layout,
        loaded_params: result.applied.iter().map(numel).sum(),
        total_params: shapes.keys().map(numel).sum(),
        loaded: result.applied,
        random_init,
        unused: result.unused,
    };
    Ok((model, report))
}

fn source_name(source: &BTreeMap<String, String>, name: &str) -> String {
    source.get(name).cloned().unwrap_or_else(|| name.to_string())
}

fn describe(e: &ApplyError, source: &BTreeMap<String, String>, pytorch_layout: bool) -> String {
    let from = |p: &str| {
        let s = source_name(source, p);
        if s == p { String::new() } else { format!(" (file tensor `{s}`)") }
    };
    match e {
        ApplyError::ShapeMismatch { path, expected, found } => {
            let note = if pytorch_layout && found.len() == 2 { ", after PyTorch's [out, in] was transposed" } else { "" };
            format!("`{path}`{}: the file has shape {:?}{note}, the model expects {:?}", from(path), found.to_vec(), expected.to_vec())
        }
        ApplyError::DTypeMismatch { path, expected, found } => {
            format!("`{path}`{}: the file has dtype {found:?}, the model expects {expected:?}", from(path))
        }
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            format!("`{path}`{}: {message}", from(path))
        }
    }
}

/// The file's tensors, named as in the file (our ONNX exports without the builder's `_N`
/// suffix), whether the file is in PyTorch layout, and whether it is our ONNX export.
fn read_tensors(path: &Path, format: Format) -> crate::Result<(Vec<PackTensor>, bool, bool)> {
    // third-party parsers of untrusted files: a panic becomes an error
    let read = std::panic::catch_unwind(|| -> crate::Result<(Vec<PackTensor>, bool, bool)> {
        let all = |m: &BTreeMap<String, PackTensor>| m.values().cloned().collect::<Vec<_>>();
        match format {
            Format::Pytorch => {
                let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
                Ok((all(store.get_all_tensors().map_err(|e| store_err(path, e))?), true, false))
            }
            Format::Safetensors => {
                let burn = safetensors_producer(path).as_deref() == Some("burn");
                let mut store = SafetensorsStore::from_file(path).map_indices_contiguous(false);
                Ok((all(store.get_all_tensors().map_err(|e| store_err(path, e))?), !burn, false))
            }
            Format::Burnpack => {
                let mut store = BurnpackStore::from_file(path).auto_extension(false);
                Ok((all(store.get_all_tensors().map_err(|e| store_err(path, e))?), false, false))
            }
            Format::Onnx => onnx_tensors(path),
        }
    });
    let (tensors, pytorch, ours) = read.map_err(|_| store_err(path, format!("the {format} reader failed on this file")))??;
    // materialize now, so a truncated file fails here with its name rather than mid-apply
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let name = t.name.clone();
        let data = bridge::into_data(t).map_err(|e| store_err(path, format!("tensor `{name}`: {e}")))?;
        out.push(bridge::from_data(data, name, None));
    }
    Ok((out, pytorch, ours))
}

/// `__metadata__.producer` of a safetensors header (burn writes `burn`).
fn safetensors_producer(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    v.get("__metadata__")?.get("producer")?.as_str().map(str::to_string)
}

/// Module path of an initializer of our own spot export, its `_N` suffix dropped (`stem0.weight`
/// → `stem.0.conv.weight`, `stem0.norm.gamma` → `stem.0.norm.gamma`, `block1.q.weight` →
/// `blocks.1.q.weight`; the two-scale model's `context.stem0.weight` → `context.stem.0.conv.weight`).
fn spot_path(base: &str) -> String {
    if let Some(inner) = base.strip_prefix("context.") {
        return format!("context.{}", spot_path(inner));
    }
    let (head, rest) = base.split_once('.').unwrap_or((base, ""));
    let index = |prefix: &str| head.strip_prefix(prefix).filter(|i| !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit()));
    if let Some(i) = index("stem") {
        if rest == "weight" || rest == "bias" {
            return format!("stem.{i}.conv.{rest}");
        }
        return format!("stem.{i}.{rest}");
    }
    if let Some(i) = index("block") {
        return format!("blocks.{i}.{rest}");
    }
    base.to_string()
}

/// The float initializers of an ONNX model (integer ones are shapes and axes, never weights).
fn onnx_tensors(path: &Path) -> crate::Result<(Vec<PackTensor>, bool, bool)> {
    let bytes = std::fs::read(path).map_err(|e| store_err(path, e))?;
    let m = onnx_format::decode(&bytes, &path.display().to_string()).map_err(|e| crate::Error::Store(e.to_string()))?;
    let ours = m.producer_name.as_deref() == Some(OUR_PRODUCER);
    let g = m.graph.ok_or_else(|| store_err(path, "not an ONNX model (no graph)"))?;
    let mut out = Vec::new();
    for t in g.initializer {
        let name = t.name.clone().unwrap_or_default();
        let dt = t.data_type.unwrap_or(0);
        let is = |d: DataType| dt == d as i32;
        // integer initializers are shapes and axes; our rank-0 ones are constants (eps, scales)
        if !is(DataType::Float) && !is(DataType::Double) || ours && t.dims.is_empty() {
            continue;
        }
        if t.data_location == Some(DataLocation::External as i32) {
            return Err(store_err(path, format!("initializer `{name}` is stored in an external file (not supported)")));
        }
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| store_err(path, format!("initializer `{name}`: negative dim {d}"))))
            .collect::<crate::Result<_>>()?;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match (&t.raw_data, is(DataType::Float)) {
            (Some(raw), true) => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            (Some(raw), false) => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            (None, true) => t.float_data.clone(),
            (None, false) => t.double_data.iter().map(|&v| v as f32).collect(),
        };
        let width = if is(DataType::Float) { 4 } else { 8 };
        if values.len() != n || t.raw_data.as_ref().is_some_and(|r| r.len() != n * width) {
            return Err(store_err(path, format!("initializer `{name}`: {} values for shape {shape:?}", values.len())));
        }
        let name = if ours { drop_suffix(&name).to_string() } else { name };
        out.push(bridge::from_data(TensorData::new(values, shape), name, None));
    }
    Ok((out, !ours, ours))
}

/// A builder name without its running count (`stem0.weight_3` → `stem0.weight`).
fn drop_suffix(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Weights;
    use crate::spot::SpotModelConfig;
    use burn::prelude::*;

    fn tiny() -> SpotModelConfig {
        SpotModelConfig { stem_channels: vec![8, 8], patch: 8, ..SpotModelConfig::tiny() }
    }

    fn model(cfg: &SpotModelConfig, seed: u64) -> SpotModel {
        let device = Device::flex();
        device.seed(seed);
        cfg.init(&device)
    }

    fn image(seed: u64) -> Tensor<4> {
        let device = Device::flex();
        device.seed(seed);
        Tensor::random([2, 3, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device)
    }

    /// Every tensor of the model by module path.
    fn values(m: &SpotModel) -> BTreeMap<String, Vec<f32>> {
        m.collect(None, None, true)
            .into_iter()
            .map(|t| {
                let name = t.name.clone();
                (name, bridge::into_data(t).unwrap().convert::<f32>().try_into_vec::<f32>().unwrap())
            })
            .collect()
    }

    #[test]
    fn burnpack_round_trip_sets_every_tensor() {
        let _rng = crate::test_rng();
        let dir = tempfile_dir("bpk");
        let a = model(&tiny(), 1);
        let path = dir.join("a.bpk");
        a.save_weights(&path).unwrap();
        let b = model(&tiny(), 2);
        let x = image(3);
        assert_ne!(crate::to_vec(a.forward(x.clone())), crate::to_vec(b.forward(x.clone())));
        let opts = InitOptions { allow_partial: false, ..Default::default() };
        let (b, report) = load_init(b, &path, &opts).unwrap();
        assert_eq!(report.format, Format::Burnpack);
        assert!(!report.pytorch_layout);
        assert!(report.random_init.is_empty() && report.unused.is_empty(), "{report}");
        assert_eq!(report.loaded_params, report.total_params);
        assert_eq!(report.loaded.len(), values(&a).len());
        assert_eq!(crate::to_vec(a.forward(x.clone())), crate::to_vec(b.forward(x)));
        // the same file under another name: found by its magic
        let renamed = dir.join("weights.bin");
        std::fs::copy(&path, &renamed).unwrap();
        assert_eq!(detect_format(&renamed).unwrap(), Format::Burnpack);
    }

    #[test]
    fn loaded_weights_train() {
        use burn::optim::{AdamConfig, GradientsParams};
        let _rng = crate::test_rng();
        let dir = tempfile_dir("train");
        let path = dir.join("a.bpk");
        let a = model(&tiny(), 1);
        a.save_weights(&path).unwrap();
        let ad = Device::flex().autodiff();
        ad.seed(2);
        let (m, _) = load_init(tiny().init(&ad), &path, &InitOptions::default()).unwrap();
        assert_eq!(values(&m)["stem.0.conv.weight"], values(&a)["stem.0.conv.weight"]);
        let x = Tensor::random([2, 3, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &ad);
        let loss = m.forward(x).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let m = AdamConfig::new().init().step(1e-2, m, grads);
        let (va, vm) = (values(&a), values(&m));
        for name in ["stem.0.conv.weight", "stem.0.norm.gamma", "patch.weight", "head.weight"] {
            assert_ne!(va[name], vm[name], "{name} did not move: loaded weights must stay trainable");
        }
    }

    #[test]
    fn partial_load_keeps_the_rest_at_init() {
        let _rng = crate::test_rng();
        let dir = tempfile_dir("partial");
        let a = model(&tiny(), 1);
        // only the stem and the patch conv, as a pretrained encoder would give
        let path = dir.join("stem.safetensors");
        let mut store = SafetensorsStore::from_file(&path).with_regex(r"^(stem|patch)\.").overwrite(true);
        a.save_into(&mut store).unwrap();
        let b = model(&tiny(), 2);
        let before = values(&b);
        let (b, report) = load_init(b, &path, &InitOptions::default()).unwrap();
        assert_eq!(report.format, Format::Safetensors);
        assert!(!report.pytorch_layout, "burn's safetensors are read in burn layout");
        let (va, vb) = (values(&a), values(&b));
        for (name, v) in &vb {
            let from_file = name.starts_with("stem.") || name.starts_with("patch.");
            assert_eq!(report.loaded.contains(name), from_file, "{name}: {report}");
            assert_eq!(report.random_init.contains(name), !from_file, "{name}");
            let expect = if from_file { &va[name] } else { &before[name] };
            assert_eq!(v, expect, "{name}");
        }
        assert_eq!(report.loaded.len(), 2 * 4 + 2, "2 stem layers × (conv w, b, norm γ, β) + patch w, b");
        // partial loading off: the same file is refused, naming what is missing
        let strict = InitOptions { allow_partial: false, ..Default::default() };
        let err = load_init(model(&tiny(), 2), &path, &strict).unwrap_err().to_string();
        assert!(err.contains("not in the file") && err.contains("head.weight"), "{err}");
    }

    #[test]
    fn remap_renames_file_tensors() {
        let _rng = crate::test_rng();
        let dir = tempfile_dir("remap");
        let a = model(&tiny(), 1);
        let path = dir.join("enc.bpk");
        // the stem as `encoder.N.…`
        let mut stem = a.collect(Some(burn::store::PathFilter::new().with_regex(r"^stem\.")), None, true);
        for t in &mut stem {
            t.name = t.name.replacen("stem.", "encoder.", 1);
        }
        burn::store::burn_pack::Writer::new(stem).write_to_file(&path).unwrap();
        // without the remap nothing matches: an error that lists the file's names
        let err = load_init(model(&tiny(), 2), &path, &InitOptions::default()).unwrap_err().to_string();
        assert!(err.contains("no tensor") && err.contains("encoder.0.conv.weight"), "{err}");
        let opts = InitOptions { remap: vec![parse_remap(r"^encoder\.(\d+)\.=stem.$1.").unwrap()], ..Default::default() };
        let (b, report) = load_init(model(&tiny(), 2), &path, &opts).unwrap();
        assert_eq!(report.loaded.len(), 8, "{report}");
        assert_eq!(values(&b)["stem.1.norm.gamma"], values(&a)["stem.1.norm.gamma"]);
    }

    #[test]
    fn shape_mismatch_names_the_tensor_and_both_shapes() {
        let _rng = crate::test_rng();
        let dir = tempfile_dir("shape");
        let wide = SpotModelConfig { stem_channels: vec![12, 8], ..tiny() };
        let path = dir.join("wide.bpk");
        model(&wide, 1).save_weights(&path).unwrap();
        let err = load_init(model(&tiny(), 2), &path, &InitOptions::default()).unwrap_err().to_string();
        assert!(err.contains("`stem.0.conv.weight`") && err.contains("[12, 3, 3, 3]") && err.contains("[8, 3, 3, 3]"), "{err}");
        assert!(err.contains("stem.1.conv.weight") && err.contains("[8, 12, 3, 3]"), "{err}");

        // a model for other genes: the head mismatches, and renaming it away leaves it at init
        let other_genes = dir.join("genes.bpk");
        model(&SpotModelConfig { num_genes: 9, ..tiny() }, 1).save_weights(&other_genes).unwrap();
        let err = load_init(model(&tiny(), 2), &other_genes, &InitOptions::default()).unwrap_err().to_string();
        assert!(err.contains("`head.weight`") && err.contains("[16, 9]") && err.contains("unused.head."), "{err}");
        let opts = InitOptions { remap: vec![parse_remap(r"^head\.=unused.head.").unwrap()], ..Default::default() };
        let (_, report) = load_init(model(&tiny(), 2), &other_genes, &opts).unwrap();
        assert_eq!(report.random_init, ["head.bias", "head.weight"]);
        assert_eq!(report.unused, ["unused.head.bias", "unused.head.weight"]);
    }

    #[test]
    fn garbage_and_truncated_files_are_errors() {
        let _rng = crate::test_rng();
        let dir = tempfile_dir("garbage");
        let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for ext in ["pt", "pth", "safetensors", "bpk", "onnx"] {
            let p = dir.join(format!("junk.{ext}"));
            std::fs::write(&p, &junk).unwrap();
            let err = load_init(model(&tiny(), 2), &p, &InitOptions::default()).err().unwrap_or_else(|| panic!("{ext}: garbage accepted"));
            eprintln!("{ext}: {err}");
            assert!(err.to_string().contains("junk."), "{ext}: {err}");
        }
        let p = dir.join("junk.weights");
        std::fs::write(&p, &junk).unwrap();
        assert!(load_init(model(&tiny(), 2), &p, &InitOptions::default()).unwrap_err().to_string().contains("unknown weight format"));
        let missing = dir.join("missing.pt");
        assert!(load_init(model(&tiny(), 2), &missing, &InitOptions::default()).is_err());
        let empty = dir.join("empty.bpk");
        std::fs::write(&empty, b"").unwrap();
        assert!(load_init(model(&tiny(), 2), &empty, &InitOptions::default()).unwrap_err().to_string().contains("empty"));

        // every format cut in half
        let a = model(&tiny(), 1);
        let bpk = dir.join("a.bpk");
        a.save_weights(&bpk).unwrap();
        let st = dir.join("a.safetensors");
        a.save_into(&mut SafetensorsStore::from_file(&st).overwrite(true)).unwrap();
        let onnx = dir.join("a.onnx");
        std::fs::write(&onnx, onnx_format::encode(&a.export(vec![]))).unwrap();
        for full in [bpk, st, onnx] {
            let bytes = std::fs::read(&full).unwrap();
            let cut = dir.join(format!("cut.{}", full.extension().unwrap().to_str().unwrap()));
            std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
            let err = load_init(model(&tiny(), 2), &cut, &InitOptions::default()).unwrap_err().to_string();
            eprintln!("half of {}: {err}", full.display());
            assert!(err.contains("cut."), "{}: {err}", full.display());
        }
    }

    #[test]
    fn onnx_export_names_map_back_to_module_paths() {
        let path = |n: &str| spot_path(drop_suffix(n));
        assert_eq!(path("stem0.weight_3"), "stem.0.conv.weight");
        assert_eq!(path("stem1.norm.beta_12"), "stem.1.norm.beta");
        assert_eq!(path("block1.q.weight_40"), "blocks.1.q.weight");
        assert_eq!(path("pos_9"), "pos");
        assert_eq!(path("graph.linear.bias_20"), "graph.linear.bias");
        assert_eq!(path("norm_eps_21"), "norm_eps");
        assert_eq!(path("stem_x"), "stem_x");
        assert_eq!(path("context.stem2.weight_7"), "context.stem.2.conv.weight");
        assert_eq!(path("context.patch.bias_9"), "context.patch.bias");
        assert!(parse_remap("no-equals").is_err());
        assert!(parse_remap("=x").is_err());
        assert!(parse_remap("(unclosed=x").is_err());
        assert_eq!(parse_remap(r"^a\.=b=c").unwrap(), (r"^a\.".to_string(), "b=c".to_string()));
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempfile_dir(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("bioedge-spot-init-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}
