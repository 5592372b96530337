//! One API over two runtimes: tract (pure Rust, default) and ONNX Runtime (`ort`, loaded at run
//! time from `libonnxruntime.so`; optional CUDA).
#![cfg_attr(not(any(feature = "tract", feature = "ort")), allow(unused, unreachable_code))]
#![warn(missing_docs)]

pub use bioedge_error::{Error, Result};
use std::path::{Path, PathBuf};

/// A tensor crossing the runtime boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A 32-bit float tensor.
    F32 {
        /// Dimensions, outermost first.
        shape: Vec<usize>,
        /// Elements in row-major order.
        data: Vec<f32>,
    },
    /// A 64-bit integer tensor.
    I64 {
        /// Dimensions, outermost first.
        shape: Vec<usize>,
        /// Elements in row-major order.
        data: Vec<i64>,
    },
}

impl Value {
    /// An f32 tensor of `shape` holding `data` (row-major; length must be the product of `shape`).
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Value::F32 { shape: shape.to_vec(), data }
    }
    /// An i64 tensor of `shape` holding `data` (row-major).
    pub fn i64(shape: &[usize], data: Vec<i64>) -> Self {
        Value::I64 { shape: shape.to_vec(), data }
    }
    /// The tensor's dimensions.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32 { shape, .. } | Value::I64 { shape, .. } => shape,
        }
    }
    /// The f32 data, or an error when the tensor is i64.
    pub fn into_f32(self) -> Result<Vec<f32>> {
        match self {
            Value::F32 { data, .. } => Ok(data),
            Value::I64 { .. } => Err(Error::Input("expected an f32 tensor, got i64".into())),
        }
    }
}

/// Which runtime executes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// tract, the pure-Rust runtime (cargo feature `tract`).
    Tract,
    /// ONNX Runtime, loaded from `libonnxruntime.so` at run time (cargo feature `ort`).
    Ort,
}

impl Backend {
    /// Short name of the backend: `tract` or `ort`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tract" => Ok(Backend::Tract),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            _ => Err(Error::Input(format!("unknown backend `{s}` (expected tract or ort)"))),
        }
    }
}

/// Options for building a session.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// ONNX Runtime: use the CUDA execution provider (feature `cuda`).
    pub cuda: bool,
    /// Threads per run, for tract and ONNX Runtime alike: 0 = one per core
    /// ([`thread_count`]), N = exactly N.
    pub threads: usize,
    /// tract: run the one plan over the model's symbolic dims instead of a plan optimised per
    /// set of input shapes (for comparisons; slower).
    pub symbolic: bool,
    /// Compute only these graph outputs (empty: all); the nodes that only feed the others are
    /// never run. A Gene2Vec `embedding` lookup then skips its genes × sets layer.
    pub outputs: Vec<String>,
}

enum Inner {
    /// Keeps the enum inhabited-by-pattern when no runtime feature is compiled in.
    #[allow(dead_code)]
    Never(std::convert::Infallible),
    #[cfg(feature = "tract")]
    Tract(Box<tract::Session>),
    #[cfg(feature = "ort")]
    Ort(ort_rt::Session),
}

/// The largest model (bytes) whose copy a session keeps for [`Session::run_each`]'s one-thread
/// sessions: the graph models it is for are a few MB; a larger model is not copied.
pub const RUN_EACH_MAX_BYTES: usize = 64 << 20;

/// The most threads `Options::threads` may ask for.
pub const MAX_THREADS: usize = 1024;

/// The newest `ai.onnx` opset a model may import: ONNX Runtime 1.31's ("official support for domain
/// ai.onnx is till opset 26"). tract gets the same bound, so both runtimes accept the same files
/// (tract would otherwise run a model from a future opset with today's operator semantics).
pub const MAX_OPSET: i64 = 26;

/// The threads a run uses for `Options::threads`: `threads`, or one per core when 0.
pub fn thread_count(threads: usize) -> usize {
    if threads > 0 { threads } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
}

/// Keep freed memory in the process for the next run (glibc; elsewhere a no-op). Call once at
/// the start of a binary. glibc hands blocks above 128 KiB–32 MiB back to the system when they
/// are freed, so every run pays page faults again on its large activations. ONNX Runtime keeps
/// its own arena; tract allocates each activation per run (a batch of 32 two-scale spot images:
/// 20 % of its time, decisions §4). Allocations up to 32 MiB now come from the heap, and the
/// heap is no longer trimmed below 1 GiB; the process stays at its peak, which it reaches
/// anyway on every batch.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// A loaded model ready to run.
pub struct Session {
    inner: Inner,
    /// Names of the graph inputs to feed (initializers excluded), in graph order.
    pub inputs: Vec<String>,
    /// Names of the graph outputs, in graph order.
    pub outputs: Vec<String>,
    /// The execution provider that actually runs the model (e.g. "tract", "ort-cpu", "ort-cuda").
    pub provider: String,
    /// Threads a run uses (on the CPU).
    pub threads: usize,
    /// The model and options [`Session::run_each`] makes its one-thread sessions from (kept for
    /// models up to [`RUN_EACH_MAX_BYTES`]; larger ones run their sets one after the other).
    source: Option<Source>,
    /// One-thread sessions of the same model for [`Session::run_each`], made on first use.
    workers: Vec<Session>,
}

struct Source {
    bytes: Box<[u8]>,
    origin: std::path::PathBuf,
    backend: Backend,
    opts: Options,
}

impl Session {
    /// Load ONNX bytes; `origin` names the file in messages.
    pub fn from_bytes(bytes: &[u8], origin: &Path, backend: Backend, opts: &Options) -> Result<Self> {
        let mut model = onnx_format::decode(bytes, &origin.display().to_string())
            .map_err(|e| Error::Model { path: origin.into(), msg: e.to_string() })?;
        let pruned;
        let bytes = if opts.outputs.is_empty() {
            bytes
        } else {
            let graph = model.graph.as_mut().ok_or_else(|| Error::Model { path: origin.into(), msg: "model has no graph".into() })?;
            if let Some(missing) = opts.outputs.iter().find(|o| !graph.output.iter().any(|v| v.name.as_ref() == Some(o))) {
                return Err(Error::Input(format!("{}: the model has no output `{missing}`", origin.display())));
            }
            graph.output.retain(|v| v.name.as_ref().is_some_and(|n| opts.outputs.contains(n)));
            pruned = onnx_format::encode(&model);
            &pruned[..]
        };
        let graph = model.graph.as_ref().ok_or_else(|| Error::Model { path: origin.into(), msg: "model has no graph".into() })?;
        for o in &model.opset_import {
            let v = o.version.unwrap_or(0);
            if matches!(o.domain.as_deref(), None | Some("" | "ai.onnx")) && !(1..=MAX_OPSET).contains(&v) {
                let msg = format!("the model imports ai.onnx opset {v}; the runtimes support opsets 1 to {MAX_OPSET}");
                return Err(Error::Model { path: origin.into(), msg });
            }
        }
        let init: std::collections::HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
        let inputs: Vec<String> = graph.input.iter().filter_map(|v| v.name.clone()).filter(|n| !init.contains(n.as_str())).collect();
        let outputs: Vec<String> = graph.output.iter().filter_map(|v| v.name.clone()).collect();
        let err = |msg: String| Error::Model { path: origin.into(), msg };
        // ONNX Runtime 1.31 runs ScatterND with a reduction in parallel without synchronization:
        // with several threads, concurrent updates of one target are lost (measured: errors up to
        // 4.3 on a 200k-update scatter). Such models run single-threaded in ONNX Runtime. Our
        // exports have none (segment sums are sorted prefix sums, decisions §5); older exports may.
        #[cfg_attr(not(feature = "ort"), allow(unused_variables))]
        let racy_scatter = graph.node.iter().any(|n| {
            n.op_type.as_deref() == Some("ScatterND")
                && n.attribute.iter().any(|a| a.name.as_deref() == Some("reduction") && a.s.as_deref().is_some_and(|s| s != b"none"))
        });
        if opts.threads > MAX_THREADS {
            return Err(Error::Input(format!("{} threads asked for; at most {MAX_THREADS}", opts.threads)));
        }
        let threads = thread_count(opts.threads);
        let (inner, provider, threads) = match backend {
            #[cfg(feature = "tract")]
            Backend::Tract => {
                // without the `tract-threads` feature (wasm) tract runs on one thread
                let threads = if cfg!(feature = "tract-threads") { threads } else { 1 };
                // tract can panic on a crafted model (found by fuzzing): an error about the model
                let s = bioedge_error::catch_panic(|| tract::Session::new(bytes, threads, opts.symbolic))
                    .map_err(|p| err(format!("tract failed on this model (internal panic: {p})")))?
                    .map_err(err)?;
                (Inner::Tract(Box::new(s)), "tract".to_string(), threads)
            }
            #[cfg(feature = "ort")]
            Backend::Ort => {
                let threads = if racy_scatter { 1 } else { threads };
                let opts = &Options { threads, ..opts.clone() };
                let (s, p) = ort_rt::Session::new(bytes, opts).map_err(|e| match e {
                    ort_rt::LoadError::Library(m) => Error::Runtime { backend: "ort", msg: m },
                    ort_rt::LoadError::Model(m) => err(m),
                })?;
                (Inner::Ort(s), if racy_scatter { format!("{p} (1 thread: ScatterND reduction)") } else { p }, threads)
            }
            #[allow(unreachable_patterns)]
            other => {
                let _ = (opts, threads);
                return Err(Error::Unsupported(format!("backend {} is not compiled in (cargo feature `{}`)", other.name(), other.name())));
            }
        };
        let source = (threads > 1 && !opts.cuda && bytes.len() <= RUN_EACH_MAX_BYTES).then(|| Source {
            bytes: bytes.into(),
            origin: origin.into(),
            backend,
            opts: Options { outputs: Vec::new(), ..opts.clone() },
        });
        Ok(Self { inner, inputs, outputs, provider, threads, source, workers: Vec::new() })
    }

    /// Load the ONNX model file at `path`.
    pub fn from_file(path: &Path, backend: Backend, opts: &Options) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path, backend, opts)
    }

    /// Run with inputs in graph input order; returns outputs in graph output order.
    pub fn run(&mut self, inputs: &[Value]) -> Result<Vec<Value>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!(
                "model takes {} inputs ({}), got {}",
                self.inputs.len(),
                self.inputs.join(", "),
                inputs.len()
            )));
        }
        match &mut self.inner {
            Inner::Never(n) => match *n {},
            #[cfg(feature = "tract")]
            Inner::Tract(s) => bioedge_error::catch_panic(|| s.run(inputs))
                .unwrap_or_else(|p| Err(format!("tract failed on this model (internal panic: {p})")))
                .map_err(|msg| Error::Runtime { backend: "tract", msg }),
            #[cfg(feature = "ort")]
            Inner::Ort(s) => s.run(&self.inputs, inputs, &self.outputs).map_err(|msg| Error::Runtime { backend: "ort", msg }),
        }
    }

    /// Runs independent sets of inputs (the batches of a graph model, which has no batch axis to
    /// split): with several threads, as many sets at once, each on a one-thread session of the same
    /// model (made on first use); with one thread, CUDA or a model over [`RUN_EACH_MAX_BYTES`], one
    /// after the other. Outputs in the
    /// order of `sets`, each as [`Session::run`] gives it. A batch of small graphs has too little
    /// work per node to split: ONNX Runtime ran Tox21 batches slower on 2 threads than on 1
    /// (decisions §4).
    pub fn run_each(&mut self, sets: &[Vec<Value>]) -> Result<Vec<Vec<Value>>> {
        let n = self.threads.min(sets.len());
        let Some(s) = self.source.as_ref().filter(|_| n > 1) else {
            return sets.iter().map(|s| self.run(s)).collect();
        };
        while self.workers.len() < n {
            let w = Session::from_bytes(&s.bytes, &s.origin, s.backend, &Options { threads: 1, ..s.opts.clone() })?;
            self.workers.push(w);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<Vec<Value>>>>> = sets.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for w in &mut self.workers[..n] {
                let (next, results) = (&next, &results);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(set) = sets.get(i) else { break };
                        let r = w.run(set);
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                });
            }
        });
        results.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every set was run")).collect()
    }

    /// [`Session::run_each`], returning the output called `name` of each set.
    pub fn run_each_output(&mut self, sets: &[Vec<Value>], name: &str) -> Result<Vec<Value>> {
        let i = self.output_index(name)?;
        Ok(self.run_each(sets)?.into_iter().map(|mut o| o.swap_remove(i)).collect())
    }

    fn output_index(&self, name: &str) -> Result<usize> {
        self.outputs
            .iter()
            .position(|o| o == name)
            .ok_or_else(|| Error::Input(format!("model has no output `{name}` (outputs: {})", self.outputs.join(", "))))
    }

    /// tract: how many plans specialised to one set of input shapes this session holds (at most
    /// 8, least recently used dropped first); 0 for ONNX Runtime.
    pub fn shape_plans(&self) -> usize {
        match &self.inner {
            #[cfg(feature = "tract")]
            Inner::Tract(s) => s.shape_plans(),
            _ => 0,
        }
    }

    /// Run and return the output called `name`.
    pub fn run_output(&mut self, inputs: &[Value], name: &str) -> Result<Value> {
        let i = self.output_index(name)?;
        Ok(self.run(inputs)?.swap_remove(i))
    }
}

#[cfg(feature = "tract")]
pub mod tract_ops;

#[cfg(feature = "tract")]
mod tract {
    use super::Value;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tract_onnx::prelude::multithread::{self, Executor};
    use tract_onnx::prelude::*;

    /// Plans kept per session, one per input shape (least recently used dropped first).
    const PLANS: usize = 8;

    /// Input values per item from which a batch runs item by item (a 3 × 224 × 224 image has
    /// 150,528; an expression profile a few thousand).
    const ITEM_VALUES: usize = 1 << 16;

    /// One per thread count: a rayon pool is built once per process, not per session or run.
    static EXECUTORS: Mutex<Vec<(usize, Executor)>> = Mutex::new(Vec::new());

    /// The executor for `threads` (≥ 1). One thread is tract's single-thread path: a one-thread
    /// pool (`Executor::multithread(1)`) would use every core (sonos/tract#2894).
    fn executor(threads: usize) -> Executor {
        #[cfg(feature = "tract-threads")]
        if threads > 1 {
            let mut pools = EXECUTORS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, e)) = pools.iter().find(|(n, _)| *n == threads) {
                return e.clone();
            }
            let e = Executor::multithread_with_name(threads, "bioedge-tract");
            pools.push((threads, e.clone()));
            return e;
        }
        let _ = (threads, &EXECUTORS);
        Executor::SingleThread
    }

    type Plan = Arc<TypedRunnableModel>;

    /// `data` as a tensor of `shape`, written into `old`'s memory where it has that type and
    /// shape (a large input then costs a copy, not fresh pages from the system on every run),
    /// the copy shared out over `executor`'s threads.
    fn into_tensor<T: Datum + Copy>(old: Option<Tensor>, shape: &[usize], data: &[T], executor: &Executor) -> TractResult<Tensor> {
        if let Some(mut t) = old
            && t.datum_type() == T::datum_type()
            && t.shape() == shape
        {
            {
                let mut ram = t.try_as_plain_ram_mut()?;
                let dst = ram.as_slice_mut::<T>()?;
                tract_onnx::tract_core::internal::ensure!(dst.len() == data.len(), "{} values for a shape {shape:?}", data.len());
                multithread::multithread_tract_scope(executor.clone(), || {
                    multithread::par_chunks_mut(dst, 1, data.len(), |first, chunk| {
                        chunk.copy_from_slice(&data[first..first + chunk.len()]);
                        Ok(())
                    })
                })?;
            }
            return Ok(t);
        }
        Tensor::from_shape(shape, data)
    }
    type Shapes = Vec<Vec<usize>>;

    /// A tract model and its plans. A plan optimised for the concrete input shapes runs faster
    /// than the plan over the file's symbolic dims, but costs an optimisation pass: a shape
    /// runs on the symbolic plan the first time it is seen and gets its own plan the second
    /// time (at once where the symbolic plan cannot run the model).
    ///
    /// A model whose inputs and outputs all start with the axis `batch` holds independent items
    /// along it (the convention of our exports: spot images, expression samples). Its batches
    /// run in parts on one-thread plans, shared out over the threads (`parts`): tract's own
    /// threads split only large matrix products (1.0–1.2× on 2 threads, decisions §4), parts
    /// of a batch scale with the cores.
    pub struct Session {
        /// The decluttered model, input dims still symbolic.
        model: TypedModel,
        /// Per input, per axis: the symbol the axis binds (None: a fixed size or an expression).
        input_symbols: Vec<Vec<Option<Symbol>>>,
        /// The plan over symbolic dims, once built.
        symbolic_plan: Option<Plan>,
        /// The symbolic plan failed to build or to run: shapes go straight to their own plan.
        symbolic_fails: bool,
        /// Plans optimised for one set of input shapes (and whether they run on one thread: the
        /// parts of a split batch), most recently used last; None where specialising failed
        /// (the symbolic plan runs those).
        plans: Vec<((Shapes, bool), Option<Plan>)>,
        /// Shapes run once on the symbolic plan, most recent last.
        seen: Vec<Shapes>,
        options: RunOptions,
        /// Run everything on the symbolic plan.
        symbolic: bool,
        /// Threads per run.
        threads: usize,
        /// Every input and output starts with the axis `batch`: batches may be split.
        batched: bool,
        /// The last run's input tensors, written over by the next run of the same shapes (one
        /// copy of the inputs stays in memory between runs).
        kept: Vec<Option<Tensor>>,
    }

    impl Session {
        /// `threads` ≥ 1; `symbolic`: never specialise per input shape.
        pub fn new(bytes: &[u8], threads: usize, symbolic: bool) -> Result<Self, String> {
            let model = tract_onnx::onnx()
                .model_for_read(&mut &bytes[..])
                .and_then(|m| m.into_typed())
                .and_then(|m| m.into_decluttered())
                .map_err(|e| format!("tract cannot load the model: {e:#}"))?;
            let input_symbols = model
                .input_outlets()
                .map_err(|e| format!("{e:#}"))?
                .iter()
                .map(|o| {
                    let fact = model.outlet_fact(*o)?;
                    Ok(fact.shape.iter().map(|d| if let TDim::Sym(s) = d { Some(s.clone()) } else { None }).collect())
                })
                .collect::<TractResult<Vec<Vec<Option<Symbol>>>>>()
                .map_err(|e| format!("{e:#}"))?;
            let options = RunOptions { executor: Some(executor(threads)), ..Default::default() };
            // nothing to specialise: one plan
            let symbolic = symbolic || input_symbols.iter().flatten().all(Option::is_none);
            let leading_batch = |f: &TypedFact| matches!(f.shape.iter().next(), Some(TDim::Sym(s)) if format!("{s}") == "batch");
            let all_batched = |outlets: TractResult<&[OutletId]>| -> bool {
                outlets.is_ok_and(|os| !os.is_empty() && os.iter().all(|o| model.outlet_fact(*o).is_ok_and(leading_batch)))
            };
            let batched = all_batched(model.input_outlets()) && all_batched(model.output_outlets());
            let mut s = Self {
                model,
                input_symbols,
                symbolic_plan: None,
                symbolic_fails: false,
                plans: Vec::new(),
                seen: Vec::new(),
                options,
                symbolic,
                threads,
                batched,
                kept: Vec::new(),
            };
            if s.symbolic {
                s.symbolic_plan()?;
            }
            Ok(s)
        }

        fn symbolic_plan(&mut self) -> Result<Plan, String> {
            if let Some(p) = &self.symbolic_plan {
                return Ok(p.clone());
            }
            let p = super::tract_ops::optimize(self.model.clone())
                .and_then(|m| m.into_runnable_with_options(&self.options))
                .map_err(|e| format!("tract cannot optimize the model: {e:#}"))?;
            self.symbolic_plan = Some(p.clone());
            Ok(p)
        }

        /// The symbols of the inputs bound to the sizes of `shapes`; None when an input's rank
        /// differs or one symbol would take two sizes (the run then reports the mismatch).
        fn bindings(&self, shapes: &[Vec<usize>]) -> Option<HashMap<Symbol, TDim>> {
            let mut subs: HashMap<Symbol, TDim> = HashMap::new();
            for (axes, shape) in self.input_symbols.iter().zip(shapes) {
                if axes.len() != shape.len() {
                    return None;
                }
                for (sym, &n) in axes.iter().zip(shape) {
                    if let Some(sym) = sym {
                        let n = TDim::Val(n as i64);
                        if subs.insert(sym.clone(), n.clone()).is_some_and(|old| old != n) {
                            return None;
                        }
                    }
                }
            }
            Some(subs)
        }

        /// The cached plan for `shapes` (Some(None): specialising them failed before); `single`:
        /// the one-thread plan for a part of a split batch.
        fn cached(&mut self, shapes: &Shapes, single: bool) -> Option<Option<Plan>> {
            let i = self.plans.iter().position(|((k, one), _)| k == shapes && *one == single)?;
            let hit = self.plans.remove(i);
            let plan = hit.1.clone();
            self.plans.push(hit);
            Some(plan)
        }

        /// Optimise the model for `shapes` and cache the plan (or the failure); `single`: on one
        /// thread.
        fn specialise(&mut self, shapes: Shapes, single: bool) -> Option<Plan> {
            let one = RunOptions { executor: Some(Executor::SingleThread), ..Default::default() };
            let options = if single { &one } else { &self.options };
            let plan = self.bindings(&shapes).and_then(|subs| {
                self.model.set_symbols(&subs).and_then(super::tract_ops::optimize).and_then(|m| m.into_runnable_with_options(options)).ok()
            });
            if self.plans.len() == PLANS {
                self.plans.remove(0);
            }
            if !single {
                self.seen.retain(|k| *k != shapes);
            }
            self.plans.push(((shapes, single), plan.clone()));
            plan
        }

        /// The one-thread plan for `shapes`, cached.
        fn single_plan(&mut self, shapes: &Shapes) -> Option<Plan> {
            match self.cached(shapes, true) {
                Some(p) => p,
                None => self.specialise(shapes.clone(), true),
            }
        }

        /// How a batch of `b` items is split: the part sizes, or None where it runs whole.
        /// - Items of at least [`ITEM_VALUES`] input values (images) run one by one, whatever the
        ///   threads: tract convolves a single image without materialising its im2col matrix
        ///   (lazy im2col serves batch 1 only), 1.5× faster per image than a batch of 32 on the
        ///   two-scale spot model, and an item's output never depends on its batch or the threads.
        /// - Smaller items go in one part per thread of at least two items each (a part of one
        ///   takes matrix-vector kernels, whose sums round differently; parts of two or more give
        ///   the whole batch's output bit for bit, `tests/tests/threads.rs`).
        fn parts(&self, shapes: &Shapes) -> Option<Vec<usize>> {
            let b = shapes.first()?.first().copied()?;
            if !self.batched || b == 0 || !shapes.iter().all(|s| s.first() == Some(&b)) {
                return None;
            }
            let per_item: usize = shapes.iter().map(|s| s[1..].iter().product::<usize>()).sum();
            if per_item >= ITEM_VALUES {
                return Some(vec![1; b]);
            }
            let k = self.threads.min(b / 2);
            (k > 1).then(|| (0..k).map(|i| b / k + usize::from(i < b % k)).collect())
        }

        /// Run the batch in `parts` along axis 0 on one-thread plans, the parts shared out over
        /// the session's threads in order, and join the outputs; None where a part has no plan
        /// (the caller runs the batch whole).
        fn run_split(&mut self, shapes: &Shapes, parts: &[usize], tensors: &TVec<TValue>) -> Option<Result<TVec<TValue>, String>> {
            let shapes_of =
                |n: usize| -> Shapes { shapes.iter().map(|s| std::iter::once(n).chain(s[1..].iter().copied()).collect()).collect() };
            // one plan per part size (one or two sizes), looked up once per run
            let mut sizes: Vec<(usize, Plan)> = Vec::new();
            for &n in parts {
                if !sizes.iter().any(|(m, _)| *m == n) {
                    sizes.push((n, self.single_plan(&shapes_of(n))?));
                }
            }
            let plan_of = |n: usize| sizes.iter().find(|(m, _)| *m == n).map(|(_, p)| p).expect("a plan per part size");
            let err = |e: TractError| format!("{e:#}");
            let workers = self.threads.min(parts.len());
            let run = || -> Result<TVec<TValue>, String> {
                let starts: Vec<usize> = parts.iter().scan(0, |at, &n| Some(std::mem::replace(at, *at + n))).collect();
                // each worker takes the next part, cuts it from the batch and runs it, until none
                // are left
                let next = std::sync::atomic::AtomicUsize::new(0);
                let work = || -> Vec<(usize, Result<TVec<TValue>, String>)> {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let (Some(&start), Some(&n)) = (starts.get(i), parts.get(i)) else { return done };
                        let out = tensors
                            .iter()
                            .map(|t| t.slice(0, start, start + n).map(|t| t.into_tvalue()))
                            .collect::<TractResult<TVec<TValue>>>()
                            .and_then(|part| plan_of(n).run(part))
                            .map_err(err);
                        done.push((i, out));
                    }
                };
                let mut outs: Vec<(usize, Result<TVec<TValue>, String>)> = if workers > 1 {
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
                        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
                    })
                } else {
                    work()
                };
                outs.sort_by_key(|(i, _)| *i);
                let outs = outs.into_iter().map(|(_, o)| o).collect::<Result<Vec<_>, String>>()?;
                (0..outs[0].len())
                    .map(|o| {
                        let pieces: Vec<Tensor> = outs.iter().map(|out| out[o].clone().into_tensor()).collect();
                        Tensor::stack_tensors(0, &pieces).map(|t| t.into_tvalue()).map_err(err)
                    })
                    .collect()
            };
            Some(run())
        }

        pub fn shape_plans(&self) -> usize {
            self.plans.iter().filter(|(_, p)| p.is_some()).count()
        }

        pub fn run(&mut self, inputs: &[Value]) -> Result<Vec<Value>, String> {
            let executor = self.options.executor.clone().unwrap_or(Executor::SingleThread);
            let mut kept = std::mem::take(&mut self.kept);
            kept.resize_with(inputs.len(), || None);
            let tensors: TVec<TValue> = inputs
                .iter()
                .zip(kept)
                .map(|(v, old)| match v {
                    Value::F32 { shape, data } => into_tensor(old, shape, data, &executor),
                    Value::I64 { shape, data } => into_tensor(old, shape, data, &executor),
                })
                .map(|t| t.map(|t| t.into_tvalue()))
                .collect::<TractResult<_>>()
                .map_err(|e| format!("{e:#}"))?;
            let held: Vec<TValue> = tensors.iter().cloned().collect();
            let out = self.run_tensors(inputs.iter().map(|v| v.shape().to_vec()).collect(), tensors)?;
            let out: Result<Vec<Value>, String> = out
                .into_iter()
                .map(|t| {
                    let shape = t.shape().to_vec();
                    if let Ok(v) = t.to_plain_array_view::<f32>() {
                        Ok(Value::F32 { shape, data: v.iter().copied().collect() })
                    } else if let Ok(v) = t.to_plain_array_view::<i64>() {
                        Ok(Value::I64 { shape, data: v.iter().copied().collect() })
                    } else {
                        Err(format!("unsupported output type {:?}", t.datum_type()))
                    }
                })
                .collect();
            // the plan has let go of the inputs: keep their memory for the next run
            self.kept = held.into_iter().map(|t| Arc::try_unwrap(t.into_arc_tensor()).ok()).collect();
            out
        }

        fn run_tensors(&mut self, shapes: Shapes, tensors: TVec<TValue>) -> Result<TVec<TValue>, String> {
            let err = |e: TractError| format!("{e:#}");
            if self.symbolic {
                return self.symbolic_plan()?.run(tensors).map_err(err);
            }
            // split the batch where the model allows it: items one by one at once (one plan for
            // every batch size), parts per thread from a shape's second run
            if let Some(parts) = self.parts(&shapes)
                && (parts.iter().all(|&n| n == 1) || self.seen.contains(&shapes) || self.cached(&shapes, false).is_some())
                && let Some(out) = self.run_split(&shapes, &parts, &tensors)
            {
                return out;
            }
            match self.cached(&shapes, false) {
                Some(Some(plan)) => return plan.run(tensors).map_err(err),
                Some(None) => return self.symbolic_plan()?.run(tensors).map_err(err),
                None => (),
            }
            let mut failed = None;
            if !self.symbolic_fails && !self.seen.contains(&shapes) {
                // first sight: the symbolic plan, which needs no optimisation pass
                match self.symbolic_plan().and_then(|p| p.run(tensors.clone()).map_err(err)) {
                    Ok(out) => {
                        if self.seen.len() == PLANS {
                            self.seen.remove(0);
                        }
                        self.seen.push(shapes);
                        return Ok(out);
                    }
                    Err(e) => failed = Some(e),
                }
            }
            match self.specialise(shapes, false) {
                Some(plan) => {
                    let out = plan.run(tensors).map_err(err)?;
                    // the model is fine, its symbolic plan is not (e.g. a TopK whose k is an
                    // expression of the input dims)
                    self.symbolic_fails |= failed.is_some();
                    Ok(out)
                }
                None => match failed {
                    Some(e) => Err(e),
                    None => self.symbolic_plan()?.run(tensors).map_err(err),
                },
            }
        }
    }
}

/// Where `infer` looks for `libonnxruntime.so`: `ORT_DYLIB_PATH`, then the setup script's cache.
pub fn ort_library_path() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("ORT_DYLIB_PATH={} does not exist. {ORT_HINT}", p.display())) };
    }
    let p = default_ort_path();
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("ONNX Runtime library not found at {} and ORT_DYLIB_PATH is not set. {ORT_HINT}", p.display()))
    }
}

/// The cache path that `scripts/setup.sh` fills.
pub fn default_ort_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("bioedge").join("onnxruntime").join("libonnxruntime.so")
}

const ORT_HINT: &str = "Run `scripts/setup.sh`, or get it yourself: `pip download --no-deps onnxruntime==1.31.1`, unzip \
onnxruntime/capi/libonnxruntime.so.1.31.1 and point ORT_DYLIB_PATH at it (or use --backend tract).";

#[cfg(feature = "ort")]
mod ort_rt {
    use super::{Options, Value};
    use ort::session::Session as OrtSession;
    use ort::value::TensorRef;
    use std::sync::OnceLock;

    pub enum LoadError {
        Library(String),
        Model(String),
    }

    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

    fn environment() -> Result<&'static ort::environment::Environment, String> {
        ENV.get_or_init(|| {
            let path = super::ort_library_path()?;
            ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
                .with_name("bioedge")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|e| e.clone())
    }

    pub struct Session {
        s: OrtSession,
    }

    impl Session {
        pub fn new(bytes: &[u8], opts: &Options) -> Result<(Self, String), LoadError> {
            let env = environment().map_err(LoadError::Library)?;
            let m = |e: ort::Error| LoadError::Model(format!("ONNX Runtime cannot load the model: {e}"));
            let mut b = OrtSession::builder(env).map_err(m)?;
            b = b.with_intra_threads(super::thread_count(opts.threads)).map_err(|e| m(e.into()))?;
            #[allow(unused_mut)]
            let mut provider = "ort-cpu".to_string();
            if opts.cuda {
                #[cfg(feature = "cuda")]
                {
                    b = b
                        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                        .map_err(|e| LoadError::Library(format!("CUDA execution provider unavailable: {e}")))?;
                    provider = "ort-cuda".into();
                }
                #[cfg(not(feature = "cuda"))]
                return Err(LoadError::Library("built without the `cuda` feature".into()));
            }
            let s = b.commit_from_memory(bytes).map_err(m)?;
            Ok((Self { s }, provider))
        }

        pub fn run(&mut self, names: &[String], inputs: &[Value], outputs: &[String]) -> Result<Vec<Value>, String> {
            let mut feed: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)> = Vec::new();
            for (name, v) in names.iter().zip(inputs) {
                let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
                // zero-copy views of the caller's data
                let value: ort::session::SessionInputValue = match v {
                    Value::F32 { data, .. } => TensorRef::from_array_view((shape, &data[..])).map_err(|e| e.to_string())?.into(),
                    Value::I64 { data, .. } => TensorRef::from_array_view((shape, &data[..])).map_err(|e| e.to_string())?.into(),
                };
                feed.push((name.as_str().into(), value));
            }
            let out = self.s.run(feed).map_err(|e| e.to_string())?;
            outputs
                .iter()
                .map(|name| {
                    let v = &out[name.as_str()];
                    if let Ok((shape, data)) = v.try_extract_tensor::<f32>() {
                        Ok(Value::F32 { shape: shape.iter().map(|&d| d as usize).collect(), data: data.to_vec() })
                    } else if let Ok((shape, data)) = v.try_extract_tensor::<i64>() {
                        Ok(Value::I64 { shape: shape.iter().map(|&d| d as usize).collect(), data: data.to_vec() })
                    } else {
                        Err(format!("output {name}: unsupported type"))
                    }
                })
                .collect()
        }
    }
}

/// An export against a reference (burn): max abs difference of one output, per runtime.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parity {
    /// What the check ran on (rows, nodes, molecules).
    pub samples: usize,
    /// Largest absolute difference between tract's output and the reference.
    pub tract_max_abs_diff: f64,
    /// Largest absolute difference between ONNX Runtime's output and the reference.
    pub ort_max_abs_diff: f64,
    /// The largest difference allowed for either runtime.
    pub tolerance: f64,
}

/// Run the model `bytes` on tract and ONNX Runtime with `inputs` and compare `output` with
/// `expected`; an error when either differs by more than `tolerance`.
pub fn check_parity(
    bytes: &[u8],
    name: &Path,
    inputs: &[Value],
    samples: usize,
    output: &str,
    expected: &[f32],
    tolerance: f64,
) -> Result<Parity> {
    let mut diffs = [0.0; 2];
    for (i, backend) in [Backend::Tract, Backend::Ort].into_iter().enumerate() {
        let mut s = Session::from_bytes(bytes, name, backend, &Options::default())?;
        let got = s.run_output(inputs, output)?.into_f32()?;
        if got.len() != expected.len() {
            return Err(Error::Input(format!(
                "{}: output `{output}` has {} values, the reference {}",
                backend.name(),
                got.len(),
                expected.len()
            )));
        }
        diffs[i] = max_abs_diff(&got, expected);
    }
    if diffs.iter().any(|d| !(*d <= tolerance)) {
        return Err(Error::Input(format!(
            "parity check failed: max |reference - tract| = {:.2e}, max |reference - ort| = {:.2e} > tolerance {tolerance:.0e}",
            diffs[0], diffs[1]
        )));
    }
    Ok(Parity { samples, tract_max_abs_diff: diffs[0], ort_max_abs_diff: diffs[1], tolerance })
}

/// The parity measure: the largest absolute difference between two outputs (∞ when their sizes
/// differ, NaN-aware: a NaN on either side counts as ∞).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).map(|d| if d.is_nan() { f64::INFINITY } else { d }).fold(0.0, f64::max)
}
