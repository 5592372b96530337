//! Our kernels for the tract ops where the models spend their time and tract 0.23.9 runs a
//! generic loop (docs/decisions.md §4): products by a narrow constant ([`SkinnyMatMul`]: tract
//! packs the runtime operand first), one-axis sums and means of squares ([`SumAxis`]: tract adds
//! a row one element after the other on x86), ScatterElements ([`Scatter`]: tract indexes ndarray
//! per element, ~50 ns each), casts ([`CastNum`]) and broadcasts ([`Binary`]). [`optimize`] swaps
//! them into tract's plan, the ONNX file unchanged; every value is computed in a fixed order, so
//! outputs are the same at any thread count.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{ScatterElements, ScatterReduction};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};

/// tract's `into_optimized`, with our kernels: [`before_optimizing`], then [`speed_up`]. The
/// environment variable `BIOEDGE_TRACT_OWN_KERNELS` leaves parts to tract, for comparisons:
/// `matmul` (none of [`before_optimizing`]'s swaps), `ops` (none of [`speed_up`]'s), or both.
pub fn optimize(model: TypedModel) -> TractResult<TypedModel> {
    let own = std::env::var("BIOEDGE_TRACT_OWN_KERNELS").unwrap_or_default();
    let model = if own.contains("matmul") { model } else { before_optimizing(model)? };
    let model = model.into_optimized()?;
    if own.contains("ops") {
        return Ok(model);
    }
    speed_up(model)
}

/// The widest product [`SkinnyMatMul`] takes (wider ones keep tract's packed kernels).
pub const SKINNY_MAX_COLS: usize = 64;

/// Before tract optimizes `model`: products of a runtime matrix by a constant one of at most
/// [`SKINNY_MAX_COLS`] columns become [`SkinnyMatMul`] (tract would copy the runtime operand
/// into its panel layout first, as long as the product itself on Cora's 2708 × 1433 features),
/// and row broadcasts (a `[…, n]` tensor with one `[1, …, 1, n]` row) become [`Binary`] before
/// tract chains them.
pub fn before_optimizing(mut model: TypedModel) -> TractResult<TypedModel> {
    for id in 0..model.nodes().len() {
        if row_broadcast(&model, id)
            && let Some(b) = binary_for(&model, id)
        {
            let inputs = model.nodes()[id].inputs.clone();
            let patch = TypedModelPatch::replace_single_op(&model, &model.nodes()[id], &inputs, b)?;
            patch.apply(&mut model)?;
            continue;
        }
        let node = &model.nodes()[id];
        let Some(e) = node.op_as::<EinSum>() else { continue };
        if e.q_params.is_some() || e.operating_dt != f32::datum_type() || node.inputs.len() != 2 {
            continue;
        }
        let (a, b) = (model.outlet_fact(node.inputs[0])?, model.outlet_fact(node.inputs[1])?);
        let Some(w) = b.konst.clone() else { continue };
        if a.datum_type != f32::datum_type() || a.rank() != 2 || w.datum_type() != f32::datum_type() || w.rank() != 2 {
            continue;
        }
        // "mk,kn->mn" in any letters
        let m: Vec<char> = e.axes.to_string().chars().collect();
        let plain = m.len() == 9
            && m[2] == ','
            && m[5..7] == ['-', '>']
            && m[7] == m[0]
            && m[1] == m[3]
            && m[4] == m[8]
            && m[0] != m[1]
            && m[1] != m[4]
            && m[0] != m[4];
        if !plain || w.shape()[1] > SKINNY_MAX_COLS || w.shape()[1] == 0 {
            continue;
        }
        let mut op = SkinnyMatMul::new(&w)?;
        let x = node.inputs[0];
        // a row sum of the same input, not yet taken by another product: computed with it
        let sum = model.outlet_successors(x).iter().map(|i| i.node).find(|&r| {
            model.nodes()[r].op_as::<Reduce>().is_some_and(|o| o.reducer == Reducer::Sum && *o.axes == [1])
                && !model.outlet_successors(OutletId::new(r, 0)).is_empty()
        });
        let Some(sum) = sum else {
            let patch = TypedModelPatch::replace_single_op(&model, &model.nodes()[id], &[x], op)?;
            patch.apply(&mut model)?;
            continue;
        };
        op.row_sums = true;
        let mut patch = TypedModelPatch::default();
        let tap = patch.tap_model(&model, x)?;
        let outs = patch.wire_node(&model.nodes()[id].name, op, &[tap])?;
        patch.shunt_outside(&model, OutletId::new(id, 0), outs[0])?;
        patch.shunt_outside(&model, OutletId::new(sum, 0), outs[1])?;
        patch.apply(&mut model)?;
    }
    Ok(model)
}

/// Node `id` combines a tensor `[…, n]` (n ≥ 8) with one row `[1, …, 1, n]` and takes no
/// input from a product or a convolution (tract fuses those into the product's last pass).
/// tract runs these (a batch norm over 64 channels of Tox21 atoms, ~4.6 ns per value) in a
/// chain that takes its generic loop; [`Binary`] runs them row by row.
fn row_broadcast(model: &TypedModel, id: usize) -> bool {
    let node = &model.nodes()[id];
    let fed_by_product = node.inputs.iter().any(|o| {
        let p = &model.nodes()[o.node];
        p.op_is::<EinSum>() || p.op_is::<tract_onnx::tract_core::ops::cnn::Conv>()
    });
    let facts: Vec<&TypedFact> = node.inputs.iter().filter_map(|o| model.outlet_fact(*o).ok()).collect();
    if fed_by_product || facts.len() != 2 {
        return false;
    }
    let (a, b) = (&facts[0].shape, &facts[1].shape);
    let r = a.rank();
    let row = |s: &ShapeFact| s.iter().take(r.saturating_sub(1)).all(|d| d.is_one());
    let n = |s: &ShapeFact| s.last().and_then(|d| d.to_usize().ok()).unwrap_or(0);
    r >= 2 && b.rank() == r && row(a) != row(b) && n(a) == n(b) && n(a) >= 8
}

/// [`Binary`] for node `id` of `model` where it is an f32 Add, Sub, Mul, Div, Max or Min.
fn binary_for(model: &TypedModel, id: usize) -> Option<Binary> {
    let node = &model.nodes()[id];
    let b = node.op_as::<TypedBinOp>()?;
    let arith = match b.0.name() {
        "Add" => Arith::Add,
        "Sub" => Arith::Sub,
        "Mul" => Arith::Mul,
        "Div" => Arith::Div,
        "Max" => Arith::Max,
        "Min" => Arith::Min,
        _ => return None,
    };
    let f32_fact = |o: OutletId| model.outlet_fact(o).is_ok_and(|f| f.datum_type == f32::datum_type());
    let f32_inputs = node.inputs.len() == 2 && node.inputs.iter().all(|o| f32_fact(*o));
    (b.1.is_none() && f32_inputs && f32_fact(OutletId::new(id, 0))).then_some(Binary { arith })
}

/// Swap the ops of the optimized `model` that have a faster kernel here for it.
pub fn speed_up(mut model: TypedModel) -> TractResult<TypedModel> {
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let f32_input =
            |i: usize| node.inputs.get(i).and_then(|o| model.outlet_fact(*o).ok()).is_some_and(|f| f.datum_type == f32::datum_type());
        let op: Option<Box<dyn TypedOp>> = if let Some(r) = node.op_as::<Reduce>() {
            let squares = r.reducer == Reducer::MeanOfSquares;
            ((r.reducer == Reducer::Sum || squares) && r.axes.len() == 1 && f32_input(0))
                .then(|| Box::new(SumAxis { axis: r.axes[0], mean_of_squares: squares }) as _)
        } else if let Some(s) = node.op_as::<ScatterElements>() {
            let reduction = match s.reduction {
                ScatterReduction::Add => Some(Combine::Add),
                ScatterReduction::Max => Some(Combine::Max),
                ScatterReduction::Min => Some(Combine::Min),
                _ => None,
            };
            reduction.filter(|_| f32_input(0) && f32_input(2)).map(|combine| Box::new(Scatter { axis: s.axis, combine }) as _)
        } else if let Some(c) = node.op_as::<Cast>() {
            let from = node.inputs.first().and_then(|o| model.outlet_fact(*o).ok()).map(|f| f.datum_type);
            let plain = |dt: DatumType| matches!(dt, DatumType::F32 | DatumType::F64 | DatumType::I32 | DatumType::I64);
            from.filter(|f| plain(*f) && plain(c.to) && *f != c.to).map(|_| Box::new(CastNum { to: c.to }) as _)
        } else {
            binary_for(&model, id).map(|b| Box::new(b) as _)
        };
        if let Some(op) = op {
            let inputs = node.inputs.clone();
            let patch = TypedModelPatch::replace_single_op(&model, &model.nodes()[id], &inputs, op)?;
            patch.apply(&mut model)?;
        }
    }
    Ok(model)
}

/// Sums over the one axis `axis` of an f32 tensor, the axis kept with size 1 (as tract's Reduce);
/// or the mean of the squares (tract's MeanOfSquares, the RMS of a LayerNorm: it copies the
/// input to square it, then sums it in its generic loop).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SumAxis {
    /// The summed axis.
    pub axis: usize,
    /// Σ x² · (outputs / inputs), as tract's MeanOfSquares, instead of Σ x.
    pub mean_of_squares: bool,
}

impl Op for SumAxis {
    fn name(&self) -> StaticName {
        if self.mean_of_squares { "MeanOfSquaresAxis".into() } else { "SumAxis".into() }
    }
    op_as_typed_op!();
}

impl TypedOp for SumAxis {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape = inputs[0].shape.clone();
        ensure!(self.axis < shape.rank(), "SumAxis: axis {} of a rank {} input", self.axis, shape.rank());
        shape.set(self.axis, 1.into());
        Ok(tvec!(f32::fact(shape)))
    }
}

impl EvalOp for SumAxis {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        ensure!(self.axis < shape.len(), "SumAxis: axis {} of a rank {} input", self.axis, shape.len());
        let outer: usize = shape[..self.axis].iter().product();
        let k = shape[self.axis];
        let inner: usize = shape[self.axis + 1..].iter().product();
        let x = input.try_as_plain_ram()?;
        let x = x.as_slice::<f32>()?;
        let mut out = vec![0f32; outer * inner];
        if !out.is_empty() {
            let squares = self.mean_of_squares;
            tract_onnx::tract_core::internal::multithread::par_chunks_mut(&mut out, 1, parallel_size(x.len()), |first, chunk| {
                if squares {
                    sum_range::<true>(x, k, inner, first, chunk);
                } else {
                    sum_range::<false>(x, k, inner, first, chunk);
                }
                Ok(())
            })?;
            if squares {
                let norm = out.len() as f32 / x.len() as f32;
                out.iter_mut().for_each(|v| *v *= norm);
            }
        }
        let mut out_shape: TVec<usize> = shape.into();
        out_shape[self.axis] = 1;
        Ok(tvec!(Tensor::from_shape(&out_shape, &out)?.into_tvalue()))
    }
}

/// `out[j] = Σ_k x[o, k, i]` for the flat outputs `first..first + out.len()` (`j = o · inner + i`)
/// of `x` `[outer, k, inner]`; `SQ`: of the squares. One CPU check per call, not per row.
fn sum_range<const SQ: bool>(x: &[f32], k: usize, inner: usize, first: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2
        return unsafe { sum_range_avx2::<SQ>(x, k, inner, first, out) };
    }
    sum_range_lanes::<SQ>(x, k, inner, first, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_range_avx2<const SQ: bool>(x: &[f32], k: usize, inner: usize, first: usize, out: &mut [f32]) {
    sum_range_lanes::<SQ>(x, k, inner, first, out)
}

#[inline(always)]
fn sum_range_lanes<const SQ: bool>(x: &[f32], k: usize, inner: usize, first: usize, out: &mut [f32]) {
    let f = |v: f32| if SQ { v * v } else { v };
    if inner == 1 {
        for (j, o) in out.iter_mut().enumerate() {
            *o = row_sum_lanes_of(&x[(first + j) * k..][..k], f);
        }
        return;
    }
    // pieces of one o each: add the k rows of their i range, element-wise
    let mut done = 0;
    while done < out.len() {
        let (o, i) = ((first + done) / inner, (first + done) % inner);
        let n = (inner - i).min(out.len() - done);
        let piece = &mut out[done..done + n];
        for r in 0..k {
            for (p, v) in piece.iter_mut().zip(&x[(o * k + r) * inner + i..][..n]) {
                *p += f(*v);
            }
        }
        done += n;
    }
}

/// The sum of `x` in 16 lanes (`x[l], x[l + 16], …` each), the lanes added pairwise, then the
/// tail: the same order on every machine and thread count ([`SumAxis`]'s row sums).
fn row_sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2
        return unsafe { row_sum_avx2(x) };
    }
    row_sum_lanes_of(x, |v| v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_sum_avx2(x: &[f32]) -> f32 {
    row_sum_lanes_of(x, |v| v)
}

/// [`row_sum`] of `f` of each value.
#[inline(always)]
fn row_sum_lanes_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(*v);
        }
    }
    let mut width = 8;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    tail.iter().fold(acc[0], |s, v| s + f(*v))
}

/// How [`Scatter`] combines an update with the value in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Combine {
    /// `data += update`
    Add,
    /// `data = max(data, update)` (a NaN update is skipped)
    Max,
    /// `data = min(data, update)` (a NaN update is skipped)
    Min,
}

/// ONNX ScatterElements with a reduction on f32 data: the updates combined into the data in
/// their row-major order (as ONNX Runtime does), indices checked (an error, never a panic).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scatter {
    /// The axis the indices point along.
    pub axis: usize,
    /// How an update joins the value in place.
    pub combine: Combine,
}

impl Op for Scatter {
    fn name(&self) -> StaticName {
        format!("Scatter<{:?}>", self.combine).into()
    }
    op_as_typed_op!();
}

impl TypedOp for Scatter {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }
}

impl EvalOp for Scatter {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (data, indices, updates) = args_3!(inputs);
        let indices = indices.cast_to::<i64>()?;
        let ds: TVec<usize> = data.shape().into();
        let (ds, is, us) = (&ds[..], indices.shape(), updates.shape());
        ensure!(is == us, "ScatterElements: indices {is:?} and updates {us:?} differ in shape");
        ensure!(
            ds.len() == is.len() && self.axis < ds.len() && ds.iter().zip(is).enumerate().all(|(a, (d, i))| a == self.axis || i <= d),
            "ScatterElements: indices {is:?} do not fit data {ds:?} (axis {})",
            self.axis
        );
        let mut out = data.into_tensor();
        let s = ds[self.axis] as i64;
        let idx = indices.try_as_plain_ram()?;
        let idx = idx.as_slice::<i64>()?;
        let upd = updates.try_as_plain_ram()?;
        let upd = upd.as_slice::<f32>()?;
        let (outer, k) = (is[..self.axis].iter().product::<usize>(), is[self.axis]);
        let inner_i: usize = is[self.axis + 1..].iter().product();
        let inner_d: usize = ds[self.axis + 1..].iter().product();
        // the offset in data of an update's row outside the axis, in the generic case
        let same_rest = ds[..self.axis] == is[..self.axis] && ds[self.axis + 1..] == is[self.axis + 1..];
        let rest_strides: Vec<(usize, usize)> = (self.axis + 1..ds.len()).map(|a| (is[a], ds[a + 1..].iter().product())).collect();
        let lead_strides: Vec<(usize, usize)> = (0..self.axis).map(|a| (is[a], ds[a + 1..].iter().product())).collect();
        let offset = |flat: usize, strides: &[(usize, usize)]| -> usize {
            let mut rem = flat;
            let mut off = 0;
            for (n, stride) in strides.iter().rev() {
                off += (rem % n) * stride;
                rem /= n;
            }
            off
        };
        let mut ram = out.try_as_plain_ram_mut()?;
        let d = ram.as_slice_mut::<f32>()?;
        let combine = self.combine;
        for o in 0..outer {
            let base = if same_rest { o * s as usize * inner_d } else { offset(o, &lead_strides) };
            for r in 0..k {
                let row = (o * k + r) * inner_i;
                for i in 0..inner_i {
                    let mut at = idx[row + i];
                    if at < 0 {
                        at += s;
                    }
                    ensure!((0..s).contains(&at), "ScatterElements: index {} out of bounds for an axis of {s}", idx[row + i]);
                    let col = if same_rest { i } else { offset(i, &rest_strides) };
                    let slot = &mut d[base + at as usize * inner_d + col];
                    let v = upd[row + i];
                    match combine {
                        Combine::Add => *slot += v,
                        Combine::Max => {
                            if v > *slot {
                                *slot = v
                            }
                        }
                        Combine::Min => {
                            if v < *slot {
                                *slot = v
                            }
                        }
                    }
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// Columns per block of [`SkinnyMatMul`]'s constant operand (one AVX-512 register, two AVX2).
const BLOCK: usize = 16;

/// `a [m, k] · b [k, n]` with `b` constant and narrow: each output row a sequence of
/// `k` fused multiply-adds per column, straight from `a`'s rows (no packing of `a`), rows shared
/// out over the threads. Each output is summed over k in order: the same at any thread count.
#[derive(Debug, Clone)]
pub struct SkinnyMatMul {
    k: usize,
    n: usize,
    /// `b` in column blocks of [`BLOCK`]: block j is `[k, BLOCK]` (columns past n are zeros).
    blocks: Arc<Vec<f32>>,
    /// A second output `[m, 1]`: the row sums of `a` ([`SumAxis`]'s, bit for bit), taken per
    /// tile while its rows are in cache rather than in a second pass over `a`.
    row_sums: bool,
}

impl PartialEq for SkinnyMatMul {
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
            && self.n == other.n
            && self.row_sums == other.row_sums
            && self.blocks.iter().map(|v| v.to_bits()).eq(other.blocks.iter().map(|v| v.to_bits()))
    }
}

impl Eq for SkinnyMatMul {}

impl SkinnyMatMul {
    /// The product by the f32 matrix `b` `[k, n]`.
    pub fn new(b: &Tensor) -> TractResult<Self> {
        ensure!(b.rank() == 2, "SkinnyMatMul: b has rank {}", b.rank());
        let (k, n) = (b.shape()[0], b.shape()[1]);
        let plain = b.try_as_plain_ram()?;
        let v = plain.as_slice::<f32>()?;
        let nb = n.div_ceil(BLOCK);
        let mut blocks = vec![0f32; nb * k * BLOCK];
        for r in 0..k {
            for c in 0..n {
                blocks[(c / BLOCK) * k * BLOCK + r * BLOCK + c % BLOCK] = v[r * n + c];
            }
        }
        Ok(SkinnyMatMul { k, n, blocks: Arc::new(blocks), row_sums: false })
    }

    /// Values per output row: the product's n, and the row sum with `row_sums`.
    fn stride(&self) -> usize {
        self.n + usize::from(self.row_sums)
    }

    /// Rows `first..` of the product into `out` (whole rows of [`Self::stride`]); `a` holds at
    /// least those rows.
    fn rows(&self, a: &[f32], first: usize, out: &mut [f32]) {
        let k = self.k;
        let m = out.len() / self.stride();
        assert!(a.len() >= (first + m) * k && out.len() == m * self.stride());
        let a = &a[first * k..(first + m) * k];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F; the tiles read rows of `a` inside the slice
                return self.tiles::<8>(a, out, |a, b, acc| unsafe { tile_avx512(a, k, b, acc) });
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA; as above
                return self.tiles::<4>(a, out, |a, b, acc| unsafe { tile_avx2(a, k, b, acc) });
            }
        }
        self.tiles::<4>(a, out, |a, b, acc| tile_plain(a, k, b, acc))
    }

    /// The rows of `a` in tiles of R (then single rows) by each column block, through `tile`
    /// (rows of `a` from the first of the tile, the block, the tile's sums).
    #[inline(always)]
    fn tiles<const R: usize>(&self, a: &[f32], out: &mut [f32], tile: impl Fn(&[f32], &[f32], &mut [[f32; BLOCK]]) + Copy) {
        let (k, n, stride) = (self.k, self.n, self.stride());
        let m = out.len() / stride;
        let mut acc = [[0f32; BLOCK]; R];
        let mut r0 = 0;
        while r0 < m {
            let rows = if r0 + R <= m { R } else { 1 };
            for (j, block) in self.blocks.chunks_exact(k * BLOCK).enumerate() {
                tile(&a[r0 * k..(r0 + rows) * k], block, &mut acc[..rows]);
                let cols = (n - j * BLOCK).min(BLOCK);
                for (r, acc) in acc[..rows].iter().enumerate() {
                    out[(r0 + r) * stride + j * BLOCK..][..cols].copy_from_slice(&acc[..cols]);
                }
            }
            if self.row_sums {
                for r in r0..r0 + rows {
                    out[r * stride + n] = row_sum(&a[r * k..(r + 1) * k]);
                }
            }
            r0 += rows;
        }
    }
}

/// `acc[r] = Σ_kk a[r·k + kk] · b[kk·16 ..][..16]` for the rows of `acc` (a plain loop).
fn tile_plain(a: &[f32], k: usize, b: &[f32], acc: &mut [[f32; BLOCK]]) {
    for (r, acc) in acc.iter_mut().enumerate() {
        *acc = [0.0; BLOCK];
        for (x, b) in a[r * k..][..k].iter().zip(b.chunks_exact(BLOCK)) {
            for c in 0..BLOCK {
                acc[c] += x * b[c];
            }
        }
    }
}

/// [`tile_plain`] in AVX-512 registers: 8 rows (or 1) × 16 columns, fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(a: &[f32], k: usize, b: &[f32], acc: &mut [[f32; BLOCK]]) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= acc.len() * k && b.len() >= k * BLOCK);
    // SAFETY (caller): AVX-512F; the reads stay inside `a` (rows × k) and `b` (k × 16)
    unsafe {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        macro_rules! rows {
            ($($r:literal)*) => {{
                let mut s = [$({ let _ = $r; _mm512_setzero_ps() }),*];
                for kk in 0..k {
                    let bv = _mm512_loadu_ps(b.add(kk * BLOCK));
                    $(s[$r] = _mm512_fmadd_ps(_mm512_set1_ps(*a.add($r * k + kk)), bv, s[$r]);)*
                }
                for (r, v) in s.iter().enumerate() {
                    _mm512_storeu_ps(acc[r].as_mut_ptr(), *v);
                }
            }};
        }
        if acc.len() == 8 { rows!(0 1 2 3 4 5 6 7) } else { rows!(0) }
    }
}

/// [`tile_plain`] in AVX2 registers: 4 rows (or 1) × 16 columns (two registers), fused
/// multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(a: &[f32], k: usize, b: &[f32], acc: &mut [[f32; BLOCK]]) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= acc.len() * k && b.len() >= k * BLOCK);
    // SAFETY (caller): AVX2 and FMA; the reads stay inside `a` and `b`
    unsafe {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        macro_rules! rows {
            ($($r:literal)*) => {{
                let mut lo = [$({ let _ = $r; _mm256_setzero_ps() }),*];
                let mut hi = lo;
                for kk in 0..k {
                    let (bl, bh) = (_mm256_loadu_ps(b.add(kk * BLOCK)), _mm256_loadu_ps(b.add(kk * BLOCK + 8)));
                    $(
                        let x = _mm256_set1_ps(*a.add($r * k + kk));
                        lo[$r] = _mm256_fmadd_ps(x, bl, lo[$r]);
                        hi[$r] = _mm256_fmadd_ps(x, bh, hi[$r]);
                    )*
                }
                for r in 0..lo.len() {
                    _mm256_storeu_ps(acc[r].as_mut_ptr(), lo[r]);
                    _mm256_storeu_ps(acc[r].as_mut_ptr().add(8), hi[r]);
                }
            }};
        }
        if acc.len() == 4 { rows!(0 1 2 3) } else { rows!(0) }
    }
}

impl Op for SkinnyMatMul {
    fn name(&self) -> StaticName {
        "SkinnyMatMul".into()
    }
    op_as_typed_op!();
}

impl TypedOp for SkinnyMatMul {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].rank() == 2, "SkinnyMatMul: a has rank {}", inputs[0].rank());
        let m = inputs[0].shape[0].clone();
        let mut facts = tvec!(f32::fact([m.clone(), self.n.into()]));
        if self.row_sums {
            facts.push(f32::fact([m, 1.into()]));
        }
        Ok(facts)
    }
}

impl EvalOp for SkinnyMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let a = args_1!(inputs);
        ensure!(a.rank() == 2 && a.shape()[1] == self.k, "SkinnyMatMul: a is {:?}, b has {} rows", a.shape(), self.k);
        let m = a.shape()[0];
        let plain = a.try_as_plain_ram()?;
        let x = plain.as_slice::<f32>()?;
        let stride = self.stride();
        let mut out = vec![0f32; m * stride];
        if m > 0 {
            tract_onnx::tract_core::internal::multithread::par_chunks_mut(
                &mut out,
                stride,
                parallel_size(m * self.k * self.n),
                |first, chunk| {
                    self.rows(x, first, chunk);
                    Ok(())
                },
            )?;
        }
        if !self.row_sums {
            return Ok(tvec!(Tensor::from_shape(&[m, self.n], &out)?.into_tvalue()));
        }
        let product: Vec<f32> = out.chunks_exact(stride).flat_map(|r| &r[..self.n]).copied().collect();
        let sums: Vec<f32> = out.chunks_exact(stride).map(|r| r[self.n]).collect();
        Ok(tvec!(Tensor::from_shape(&[m, self.n], &product)?.into_tvalue(), Tensor::from_shape(&[m, 1], &sums)?.into_tvalue()))
    }
}

/// A cast between f32, f64, i32 and i64 (Rust's `as`, as tract's own), element by element on
/// the threads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CastNum {
    /// F32, F64, I32 or I64.
    pub to: DatumType,
}

impl Op for CastNum {
    fn name(&self) -> StaticName {
        format!("CastNum<{:?}>", self.to).into()
    }
    op_as_typed_op!();
}

impl TypedOp for CastNum {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.to.fact(inputs[0].shape.clone())))
    }
}

/// Values from which an element-wise op is shared out over the threads: below, waking the
/// other threads costs more than the pass (a `[2708, 16]` op takes ~20 µs on one thread).
const PARALLEL_VALUES: usize = 1 << 20;

/// `total` for `par_chunks_mut`'s size test: 0 (one thread) below [`PARALLEL_VALUES`].
fn parallel_size(total: usize) -> usize {
    if total >= PARALLEL_VALUES { total } else { 0 }
}

/// `out[i] = f(x[i])` on the threads, into a new tensor of `shape`.
fn map_into<A: Datum + Copy + Sync, B: Datum + Copy + Send>(
    x: &[A],
    shape: &[usize],
    f: impl Fn(A) -> B + Sync + Send,
) -> TractResult<Tensor> {
    // SAFETY: every element is written below
    let mut t = unsafe { Tensor::uninitialized::<B>(shape)? };
    {
        let mut ram = t.try_as_plain_ram_mut()?;
        let out = ram.as_slice_mut::<B>()?;
        ensure!(out.len() == x.len(), "{} values for a shape {shape:?}", x.len());
        tract_onnx::tract_core::internal::multithread::par_chunks_mut(out, 1, parallel_size(x.len()), |first, chunk| {
            for (o, v) in chunk.iter_mut().zip(&x[first..]) {
                *o = f(*v);
            }
            Ok(())
        })?;
    }
    Ok(t)
}

impl EvalOp for CastNum {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let shape: TVec<usize> = x.shape().into();
        let plain = x.try_as_plain_ram()?;
        macro_rules! to {
            ($from:ty) => {{
                let x = plain.as_slice::<$from>()?;
                match self.to {
                    DatumType::F32 => map_into(x, &shape, |v| v as f32)?,
                    DatumType::F64 => map_into(x, &shape, |v| v as f64)?,
                    DatumType::I32 => map_into(x, &shape, |v| v as i32)?,
                    DatumType::I64 => map_into(x, &shape, |v| v as i64)?,
                    dt => bail!("CastNum to {dt:?}"),
                }
            }};
        }
        let out = match x.datum_type() {
            DatumType::F32 => to!(f32),
            DatumType::F64 => to!(f64),
            DatumType::I32 => to!(i32),
            DatumType::I64 => to!(i64),
            dt => bail!("CastNum from {dt:?}"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

/// The element-wise arithmetic of [`Binary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arith {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// `a.max(b)` (a NaN gives the other value, as tract's Max)
    Max,
    /// `a.min(b)` (as tract's Min)
    Min,
}

/// An f32 element-wise op whose inputs broadcast (same rank, size 1 or the output's on each
/// axis), run row by row over the output's last axis: tract takes its generic element loop
/// (~3 ns per value) unless the broadcast block suits one of its kernels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binary {
    /// The op.
    pub arith: Arith,
}

impl Op for Binary {
    fn name(&self) -> StaticName {
        format!("Binary<{:?}>", self.arith).into()
    }
    op_as_typed_op!();
}

impl TypedOp for Binary {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = tract_onnx::tract_core::broadcast::multi_broadcast(&[&*inputs[0].shape, &*inputs[1].shape])?;
        Ok(tvec!(f32::fact(shape)))
    }
}

/// Row `row` of an output of leading dims `lead` (the last axis excluded): its start in an input
/// of shape `dims` broadcast to it (a size-1 axis repeats).
fn row_offset(mut row: usize, lead: &[usize], dims: &[usize]) -> usize {
    let last = dims[dims.len() - 1];
    let (mut off, mut stride) = (0, last);
    for (ax, &n) in lead.iter().enumerate().rev() {
        let c = row % n;
        row /= n;
        if dims[ax] != 1 {
            off += c * stride;
        }
        stride *= dims[ax];
    }
    off
}

impl EvalOp for Binary {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        ensure!(a.rank() == b.rank() && a.rank() > 0, "Binary: ranks {} and {}", a.rank(), b.rank());
        let shape: TVec<usize> = a.shape().iter().zip(b.shape()).map(|(x, y)| if *x == 1 { *y } else { *x }).collect();
        for s in [a.shape(), b.shape()] {
            ensure!(s.iter().zip(&shape).all(|(x, o)| x == o || *x == 1), "Binary: {:?} and {:?} do not broadcast", a.shape(), b.shape());
        }
        let (pa, pb) = (a.try_as_plain_ram()?, b.try_as_plain_ram()?);
        let (xa, xb) = (pa.as_slice::<f32>()?, pb.as_slice::<f32>()?);
        let r = shape.len();
        let n = shape[r - 1];
        let lead = &shape[..r - 1];
        let (da, db) = (a.shape(), b.shape());
        // SAFETY: every element is written below
        let mut t = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        if n > 0 && t.len() > 0 {
            let mut ram = t.try_as_plain_ram_mut()?;
            let out = ram.as_slice_mut::<f32>()?;
            let (a, b) = (Operand { x: xa, dims: da, row: da[r - 1] == n }, Operand { x: xb, dims: db, row: db[r - 1] == n });
            let op = self.arith;
            tract_onnx::tract_core::internal::multithread::par_chunks_mut(out, n, parallel_size(out.len()), |first, chunk| {
                binary_rows(op, chunk, first, n, lead, &a, &b);
                Ok(())
            })?;
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

/// One input of [`Binary`]: its values and shape, and whether it has whole rows of the output's
/// last axis (else one value per row).
struct Operand<'a> {
    x: &'a [f32],
    dims: &'a [usize],
    row: bool,
}

impl Operand<'_> {
    /// Its values for output row `row` (of `n` values; leading dims `lead`).
    #[inline(always)]
    fn row(&self, row: usize, lead: &[usize], n: usize) -> &[f32] {
        let at = row_offset(row, lead, self.dims);
        &self.x[at..at + if self.row { n } else { 1 }]
    }
}

/// Output rows `first..` of `a ∘ b` into `out` (whole rows of the last axis, n values; `lead` the
/// leading dims). One CPU check per call, not per row.
fn binary_rows(op: Arith, out: &mut [f32], first: usize, n: usize, lead: &[usize], a: &Operand, b: &Operand) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2
        return unsafe { binary_rows_avx2(op, out, first, n, lead, a, b) };
    }
    binary_rows_lanes(op, out, first, n, lead, a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn binary_rows_avx2(op: Arith, out: &mut [f32], first: usize, n: usize, lead: &[usize], a: &Operand, b: &Operand) {
    binary_rows_lanes(op, out, first, n, lead, a, b)
}

#[inline(always)]
fn binary_rows_lanes(op: Arith, out: &mut [f32], first: usize, n: usize, lead: &[usize], a: &Operand, b: &Operand) {
    for (i, o) in out.chunks_exact_mut(n).enumerate() {
        apply_row_lanes(op, o, a.row(first + i, lead, n), b.row(first + i, lead, n));
    }
}

/// `out = a ∘ b` over one row; `a` and `b` hold the row or one value to repeat.
#[inline(always)]
fn apply_row_lanes(op: Arith, out: &mut [f32], a: &[f32], b: &[f32]) {
    #[inline(always)]
    fn each(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
        match (a.len() == out.len(), b.len() == out.len()) {
            (true, true) => out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (x, y))| *o = f(*x, *y)),
            (true, false) => out.iter_mut().zip(a).for_each(|(o, x)| *o = f(*x, b[0])),
            (false, true) => out.iter_mut().zip(b).for_each(|(o, y)| *o = f(a[0], *y)),
            (false, false) => out.iter_mut().for_each(|o| *o = f(a[0], b[0])),
        }
    }
    match op {
        Arith::Add => each(out, a, b, |x, y| x + y),
        Arith::Sub => each(out, a, b, |x, y| x - y),
        Arith::Mul => each(out, a, b, |x, y| x * y),
        Arith::Div => each(out, a, b, |x, y| x / y),
        Arith::Max => each(out, a, b, f32::max),
        Arith::Min => each(out, a, b, f32::min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        Tensor::from_shape(shape, &values(shape.iter().product(), seed)).unwrap()
    }

    fn f32s(t: &TValue) -> Vec<f32> {
        t.to_plain_array_view::<f32>().unwrap().iter().copied().collect()
    }

    fn eval(op: &dyn TypedOp, inputs: Vec<Tensor>) -> TractResult<TVec<TValue>> {
        op.eval(&EvalContext::out_of_plan(), inputs.into_iter().map(|t| t.into_tvalue()).collect())
    }

    /// Runs `f` on a two-thread pool.
    fn on_two_threads<R>(f: impl FnOnce() -> R) -> R {
        let pool = tract_onnx::tract_core::internal::multithread::Executor::multithread(2);
        tract_onnx::tract_core::internal::multithread::multithread_tract_scope(pool, f)
    }

    #[test]
    fn sum_axis_matches_tract_and_threads_do_not_change_it() {
        for shape in [vec![3, 1433], vec![2, 5, 7], vec![4, 3, 0], vec![600, 3000], vec![1, 70000], vec![40000, 2]] {
            let x = tensor(&shape, 1);
            for axis in 0..shape.len() {
                let got = eval(&SumAxis { axis, mean_of_squares: false }, vec![x.clone()]).unwrap();
                let mut out_shape = shape.clone();
                out_shape[axis] = 1;
                assert_eq!(got[0].shape(), out_shape, "{shape:?} axis {axis}");
                // tract divides by zero summing an empty last axis: zeros
                let want: Vec<f32> = if shape[axis] == 0 {
                    vec![0.0; out_shape.iter().product()]
                } else {
                    Reducer::Sum.reduce(&[axis], &x).unwrap().to_plain_array_view::<f32>().unwrap().iter().copied().collect()
                };
                let got = f32s(&got[0]);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{shape:?} axis {axis}: {g} vs {w}");
                }
                let two = on_two_threads(|| eval(&SumAxis { axis, mean_of_squares: false }, vec![x.clone()]).unwrap());
                assert!(f32s(&two[0]).iter().map(|v| v.to_bits()).eq(got.iter().map(|v| v.to_bits())), "{shape:?} axis {axis}");
            }
        }
    }

    #[test]
    fn mean_of_squares_matches_tract() {
        for shape in [vec![2, 96, 14, 14], vec![3, 1433], vec![40000, 2]] {
            let x = tensor(&shape, 11);
            for axis in 0..shape.len() {
                let want = Reducer::MeanOfSquares.reduce(&[axis], &x).unwrap();
                let got = eval(&SumAxis { axis, mean_of_squares: true }, vec![x.clone()]).unwrap();
                assert_eq!(got[0].shape(), want.shape());
                let want: Vec<f32> = want.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
                for (g, w) in f32s(&got[0]).iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{shape:?} axis {axis}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn scatter_matches_tract_in_order_and_checks_indices() {
        // data [5, 4]; updates on axis 0 with indices [7, 3] (repeats, negatives), and on axis 1
        let data = tensor(&[5, 4], 2);
        let idx0: Vec<i64> = (0..21).map(|i| (i * 7 % 10) as i64 - 5).collect();
        let idx1: Vec<i64> = (0..15).map(|i| (i * 5 % 8) as i64 - 4).collect();
        for (axis, idx_shape, idx) in [(0, [7, 3], idx0), (1, [5, 3], idx1)] {
            let indices = Tensor::from_shape(&idx_shape, &idx).unwrap();
            let updates = tensor(&idx_shape, 3);
            for (combine, reduction) in
                [(Combine::Add, ScatterReduction::Add), (Combine::Max, ScatterReduction::Max), (Combine::Min, ScatterReduction::Min)]
            {
                let ins = vec![data.clone(), indices.clone(), updates.clone()];
                let want = ScatterElements::new(axis, reduction)
                    .eval(&EvalContext::out_of_plan(), ins.iter().cloned().map(|t| t.into_tvalue()).collect());
                let got = eval(&Scatter { axis, combine }, ins).unwrap();
                assert!(
                    f32s(&got[0]).iter().map(|v| v.to_bits()).eq(f32s(&want.unwrap()[0]).iter().map(|v| v.to_bits())),
                    "{combine:?} axis {axis}"
                );
            }
        }
        let bad = |idx: i64| {
            let ins = vec![tensor(&[4, 2], 1), Tensor::from_shape(&[1, 2], &[0i64, idx]).unwrap(), tensor(&[1, 2], 2)];
            eval(&Scatter { axis: 0, combine: Combine::Add }, ins)
        };
        assert!(bad(3).is_ok() && bad(-4).is_ok());
        for idx in [4, -5, i64::MAX, i64::MIN] {
            let e = bad(idx).unwrap_err().to_string();
            assert!(e.contains("out of bounds"), "{e}");
        }
        let wide = vec![tensor(&[4, 2], 1), Tensor::from_shape(&[1, 3], &[0i64; 3]).unwrap(), tensor(&[1, 3], 2)];
        assert!(eval(&Scatter { axis: 0, combine: Combine::Max }, wide).is_err());
    }

    #[test]
    fn skinny_matmul_matches_a_product_in_f64_at_any_thread_count() {
        for (m, k, n) in [(0, 3, 4), (1, 1, 1), (7, 33, 16), (9, 5, 17), (17, 64, 40), (2708, 150, 16), (33, 7, 64)] {
            let (a, b) = (tensor(&[m, k], 4), tensor(&[k, n], 5));
            let op = SkinnyMatMul::new(&b).unwrap();
            let got = eval(&op, vec![a.clone()]).unwrap();
            assert_eq!(got[0].shape(), &[m, n]);
            let got = f32s(&got[0]);
            let (av, bv) = (a.to_plain_array_view::<f32>().unwrap(), b.to_plain_array_view::<f32>().unwrap());
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|l| av[[i, l]] as f64 * bv[[l, j]] as f64).sum();
                    assert!((got[i * n + j] as f64 - want).abs() < 1e-4, "{m}×{k}×{n} at {i},{j}");
                }
            }
            let two = on_two_threads(|| eval(&op, vec![a.clone()]).unwrap());
            assert!(f32s(&two[0]).iter().map(|v| v.to_bits()).eq(got.iter().map(|v| v.to_bits())), "{m}×{k}×{n}");
        }
        let op = SkinnyMatMul::new(&tensor(&[3, 2], 1)).unwrap();
        assert!(eval(&op, vec![tensor(&[4, 5], 1)]).is_err());
    }

    #[test]
    fn skinny_matmul_row_sums_equal_sum_axis_bit_for_bit() {
        for (m, k, n) in [(1, 1, 1), (9, 1433, 16), (17, 40, 7), (2708, 150, 16)] {
            let (a, b) = (tensor(&[m, k], 9), tensor(&[k, n], 10));
            let plain = SkinnyMatMul::new(&b).unwrap();
            let fused = SkinnyMatMul { row_sums: true, ..plain.clone() };
            let both = on_two_threads(|| eval(&fused, vec![a.clone()]).unwrap());
            let product = eval(&plain, vec![a.clone()]).unwrap();
            let sums = eval(&SumAxis { axis: 1, mean_of_squares: false }, vec![a.clone()]).unwrap();
            assert_eq!(both.len(), 2);
            assert_eq!(both[1].shape(), &[m, 1]);
            for (got, want) in [(&both[0], &product[0]), (&both[1], &sums[0])] {
                assert!(f32s(got).iter().map(|v| v.to_bits()).eq(f32s(want).iter().map(|v| v.to_bits())), "{m}×{k}×{n}");
            }
        }
    }

    #[test]
    fn binary_matches_tract_on_broadcasts() {
        let shapes = [
            ([10557, 8, 8], [10557, 8, 1]),
            ([3, 1, 5], [1, 4, 5]),
            ([2, 3, 4], [2, 3, 4]),
            ([1, 1, 1], [6, 2, 3]),
            ([4, 1, 1], [1, 3, 1]),
        ];
        for (sa, sb) in shapes {
            for (arith, tract_op) in [
                (Arith::Add, math::add()),
                (Arith::Sub, math::sub()),
                (Arith::Mul, math::mul()),
                (Arith::Div, math::div()),
                (Arith::Max, math::max()),
                (Arith::Min, math::min()),
            ] {
                for (x, y) in [(&sa, &sb), (&sb, &sa)] {
                    let ins = vec![tensor(x, 6), tensor(y, 7)];
                    let want = eval(&tract_op, ins.clone()).unwrap();
                    let got = eval(&Binary { arith }, ins).unwrap();
                    assert_eq!(got[0].shape(), want[0].shape());
                    assert!(
                        f32s(&got[0]).iter().map(|v| v.to_bits()).eq(f32s(&want[0]).iter().map(|v| v.to_bits())),
                        "{arith:?} {x:?} {y:?}"
                    );
                }
            }
        }
        assert!(eval(&Binary { arith: Arith::Add }, vec![tensor(&[2, 3], 1), tensor(&[3, 2], 1)]).is_err());
    }

    #[test]
    fn casts_match_tract() {
        let x = Tensor::from_shape(&[6], &[1.5f32, -2.7, 3e9, -3e9, f32::NAN, 0.0]).unwrap();
        for from in [DatumType::F32, DatumType::F64, DatumType::I32, DatumType::I64] {
            let x = x.cast_to_dt(from).unwrap().into_owned();
            for to in [DatumType::F32, DatumType::F64, DatumType::I32, DatumType::I64] {
                if to == from {
                    continue;
                }
                let want = Cast { to }.eval(&EvalContext::out_of_plan(), tvec!(x.clone().into_tvalue())).unwrap();
                let got = eval(&CastNum { to }, vec![x.clone()]).unwrap();
                assert_eq!(got[0].datum_type(), to);
                let bits = |t: &TValue| format!("{:?}", t.cast_to_dt(DatumType::F64).unwrap().to_plain_array_view::<f64>().unwrap());
                assert_eq!(bits(&got[0]), bits(&want[0]), "{from:?} → {to:?}");
            }
        }
    }

    #[test]
    fn cast_float_round_trips() {
        let x = tensor(&[1100, 1000], 8);
        let wide = eval(&CastNum { to: DatumType::F64 }, vec![x.clone()]).unwrap();
        assert_eq!(wide[0].datum_type(), DatumType::F64);
        let back = on_two_threads(|| eval(&CastNum { to: DatumType::F32 }, vec![wide[0].clone().into_tensor()]).unwrap());
        assert!(f32s(&back[0]).iter().map(|v| v.to_bits()).eq(x.to_plain_array_view::<f32>().unwrap().iter().map(|v| v.to_bits())));
    }
}
