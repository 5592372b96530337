//! Graph ops: edge inputs, gathers and scatters by node, segment max / softmax, classifier heads.

use super::{Lower, dims};
use onnx_format::builder::{Attr, Dim, Elem};
use onnx_format::pb::ModelProto;

/// Most classes whose softmax is written as element-wise max and sum over class slices.
pub const MAX_SLICED_CLASSES: usize = 32;

/// How a segment sum `out[idx[e]] += vals[e]` is lowered (docs/decisions.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentSum {
    /// ScatterND with reduction=add: ONNX Runtime loses updates with several threads.
    ScatterNd,
    /// ScatterElements with reduction=add (ONNX Runtime runs it on one thread).
    ScatterElements,
    /// Messages sorted by target (TopK), f64 CumSum, differences at the segment bounds.
    #[default]
    Sorted,
    /// Padded neighbour lists by in-degree bucket, for graphs known at export
    /// ([`Lower::fixed_segment_layout`]): targets sorted by in-degree and cut into buckets
    /// ([`degree_buckets`]), each bucket's lists `[n_b, K_b]` gathered and summed over K_b, the bucket
    /// sums put back in target order. Memory ~E·C, no sort and no f64 at run time. Elsewhere
    /// (a graph given at run time, whose degrees tract cannot shape) it means `Sorted`.
    Buckets,
}

/// The widest chunk of [`Lower::segment_sum_chunked`] and [`Lower::segment_max_chunked`].
pub const MAX_CHUNK: usize = 16;

/// What one more bucket of [`SegmentSum::Buckets`] costs, in padded slots (its Gather, Reshape and
/// ReduceSum; 8 and 32 ran alike on the gene GCN, 128 and 512 slower: decisions §5).
pub const BUCKET_COST: usize = 32;

/// The buckets of [`SegmentSum::Buckets`] for targets `dst` in `0..n`: per bucket its targets (in
/// ascending in-degree) and its width K_b (the bucket's largest in-degree, at least 1). The cut
/// minimizes Σ n_b·K_b + [`BUCKET_COST`] per bucket (dynamic programming over the distinct degrees).
/// No targets: one empty bucket.
pub fn degree_buckets(dst: &[i64], n: usize) -> Vec<(Vec<usize>, usize)> {
    if n == 0 {
        return vec![(Vec::new(), 1)];
    }
    let mut counts = vec![0usize; n];
    dst.iter().for_each(|&d| counts[d as usize] += 1);
    let mut nodes: Vec<usize> = (0..n).collect();
    nodes.sort_by_key(|&v| counts[v]); // stable
    // distinct widths (degree, at least 1) and how many targets have each
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &v in &nodes {
        let k = counts[v].max(1);
        match groups.last_mut() {
            Some((w, c)) if *w == k => *c += 1,
            _ => groups.push((k, 1)),
        }
    }
    // best[j]: cheapest cut of groups[..j]; from[j]: where its last bucket starts
    let g = groups.len();
    let (mut best, mut from) = (vec![0usize; g + 1], vec![0usize; g + 1]);
    for j in 1..=g {
        let (mut rows, mut cost) = (0, usize::MAX);
        for i in (0..j).rev() {
            rows += groups[i].1;
            let c = best[i] + rows * groups[j - 1].0 + BUCKET_COST;
            if c < cost {
                (cost, from[j]) = (c, i);
            }
        }
        best[j] = cost;
    }
    let mut cuts = vec![g];
    while let Some(&j) = cuts.last().filter(|&&j| j > 0) {
        cuts.push(from[j]);
    }
    cuts.reverse();
    let mut out = Vec::new();
    let mut start = 0;
    for w in cuts.windows(2) {
        let rows: usize = groups[w[0]..w[1]].iter().map(|x| x.1).sum();
        out.push((nodes[start..start + rows].to_vec(), groups[w[1] - 1].0));
        start += rows;
    }
    out
}

/// Segments cut into chunks ([`Lower::segment_chunks`]).
#[derive(Debug, Clone)]
pub(super) struct Chunks {
    /// `[T, 1]`: each chunk's segment.
    segment: String,
    /// [`MAX_CHUNK`] × `[T]`: slot j's row of the input, or its row count (a pad row).
    slots: Vec<String>,
}

/// The layout of one index tensor's segments: graph values shared by every sum over it.
#[derive(Debug, Clone)]
pub(super) struct Segments {
    form: SegmentSum,
    /// `[E, 1]`
    idx_col: String,
    /// `[1]` = N
    n_shape: String,
    /// Sorted: edge order by target `[E]` and E as `[1]`; each target's first and past-the-end
    /// position `[N]` in that order.
    perm: String,
    e_shape: String,
    starts: String,
    ends: String,
    /// Buckets: per bucket, the `[n_b·K_b]` table of edge ids (E = empty slot) and `[n_b, K_b, -1]`.
    buckets: Vec<(String, String)>,
    /// Buckets: each target's row in the concatenated bucket sums `[N]` (None: in target order already).
    order: Option<String>,
    /// Sorted: the chunks, once made.
    chunks: Option<Chunks>,
    /// Sorted with loops ([`Lower::looped_segment_layout`]): E as `[1]`; rows E.. are one per
    /// target in target order, added to the sorted sums of rows ..E.
    tail: Option<String>,
}

impl Segments {
    fn bare(form: SegmentSum, idx_col: &str, n_shape: &str) -> Self {
        let (idx_col, n_shape) = (idx_col.to_string(), n_shape.to_string());
        Self {
            form,
            idx_col,
            n_shape,
            perm: String::new(),
            e_shape: String::new(),
            starts: String::new(),
            ends: String::new(),
            buckets: Vec::new(),
            order: None,
            chunks: None,
            tail: None,
        }
    }
}

/// The per-message weights of [`Lower::propagate`].
#[derive(Debug, Clone, Copy)]
pub enum EdgeWeights<'a> {
    /// Broadcast against the messages as they are.
    Plain(&'a str),
    /// One weight per head, `[E, H]`, for messages `[E, H, F]`: spread over each head's F values by
    /// a product with a constant 0/1 `[H, H·F]` (exact: one term is w·1, the others add 0), so the
    /// Mul meets equal shapes. ONNX Runtime broadcasts a trailing 1 row by row: on Cora's GAT that
    /// Mul took 0.9 of 12 ms (decisions §5).
    Heads {
        /// `[E, H]`
        w: &'a str,
        /// H
        heads: usize,
        /// F
        width: usize,
    },
}

impl EdgeWeights<'_> {
    fn name(&self) -> &str {
        match self {
            EdgeWeights::Plain(w) | EdgeWeights::Heads { w, .. } => w,
        }
    }
}

/// How a classifier turns logits into `probabilities`.
#[derive(Debug, Clone, Copy)]
pub enum Head {
    /// Over the classes (last axis).
    Softmax,
    /// Per task.
    Sigmoid,
}

impl Lower {
    /// Input `name [2, num_edges]` (row 0 = source, row 1 = target) → `(src, dst)`, each `[E]`.
    pub fn edge_index_inputs(&self, name: &str) -> (String, String) {
        let ei = self.input(name, Elem::I64, &[Dim::from(2usize), Dim::from("num_edges")]);
        (self.rows(&ei, &self.index(0)), self.rows(&ei, &self.index(1)))
    }

    /// `x[idx]` along axis 0.
    pub fn rows(&self, x: &str, idx: &str) -> String {
        self.node("Gather", &[x, idx], &[("axis", Attr::Int(0))])
    }

    /// The row count of `x`: as a scalar and as a shape `[1]`.
    pub fn num_rows(&self, x: &str) -> (String, String) {
        let n = self.rows(&self.op1("Shape", x), &self.index(0));
        let n_shape = self.unsqueeze(&n, 0);
        (n, n_shape)
    }

    /// A stable ascending sort of the 1-D integer `keys`: `(sorted keys, order)`. ONNX TopK breaks
    /// ties by the lower index. For tract: the keys are sorted as f64 (exact to 2^53; tract reads an
    /// integer Cast as a symbolic dim, which its TopK cannot sort), and k (all of them) is counted
    /// from the data, not read from the shape (its symbolic plan cannot evaluate a k that is an
    /// expression of the input dims, and it folds a plain Σ 1 back into one).
    pub fn sort(&self, keys: &str) -> (String, String) {
        let f = self.node("Cast", &[keys], &[("to", Attr::Int(11))]);
        let floor = self.node("Cast", &[&self.scalar("neg_inf", f32::NEG_INFINITY)], &[("to", Attr::Int(11))]);
        let all = self.node("Cast", &[&self.op2("GreaterOrEqual", &f, &floor)], &[("to", Attr::Int(11))]);
        let zero = self.node("Cast", &[&self.scalar("zero", 0.0)], &[("to", Attr::Int(11))]);
        let k = self.unsqueeze(&self.node("Cast", &[&self.total(&all, &zero)], &[("to", Attr::Int(7))]), 0);
        let (sorted, order) = (format!("{keys}_sorted"), format!("{keys}_order"));
        let attrs = [("axis", Attr::Int(0)), ("largest", Attr::Int(0)), ("sorted", Attr::Int(1))];
        self.node_to("TopK", &[&f, &k], &[&sorted, &order], &attrs);
        (self.node("Cast", &[&sorted], &[("to", Attr::Int(7))]), order)
    }

    /// The sum of the 1-D `x`, which may be empty (tract 0.23 divides by zero summing an empty
    /// last axis): a `zero` (a scalar of x's type) is appended first.
    fn total(&self, x: &str, zero: &str) -> String {
        self.reduce("Sum", &self.concat(&[x, &self.unsqueeze(zero, 0)], 0), &[0], false)
    }

    /// Columns `a..b` of the 2-D `x`.
    pub fn cols(&self, x: &str, a: usize, b: usize) -> String {
        self.node("Slice", &[x, &self.ints("cols_start", &[a as i64]), &self.ints("cols_end", &[b as i64]), &self.axes(&[1])], &[])
    }

    /// `[E]` indices as a column `[E, 1]` (ScatterND's index layout).
    pub fn column(&self, idx: &str) -> String {
        self.unsqueeze(idx, 1)
    }

    /// `value` in the runtime `shape`; the f32 value is explicit (tract defaults ConstantOfShape to f64).
    pub fn fill(&self, shape: &str, value: f32) -> String {
        self.node("ConstantOfShape", &[shape], &[("value", Attr::ScalarTensor(value))])
    }

    /// Zeros of `shape` with `out[idx[e]] += vals[e]`: a segment sum over `idx` (`[E, 1]`), in the
    /// form of `idx`'s layout ([`Lower::fixed_segment_layout`], else [`Lower::set_segment_sum`]'s form).
    /// `shape` is the output's runtime shape: `[N, …]` with `vals` `[E, …]`.
    pub fn scatter_add(&self, shape: &str, idx: &str, vals: &str) -> String {
        let seg = self.segments_of(shape, idx);
        self.segment_sum(&seg, shape, vals)
    }

    /// The layout of `idx`, made on first use for outputs of runtime shape `shape` `[N, …]`.
    fn segments_of(&self, shape: &str, idx: &str) -> Segments {
        if !self.segments.borrow().contains_key(idx) {
            let n_shape = self.rows(shape, &self.ints("first", &[0]));
            let seg = self.segment_plan(idx, &n_shape, self.segment_sum.get());
            self.segments.borrow_mut().insert(idx.to_string(), seg);
        }
        self.segments.borrow()[idx].clone()
    }

    /// The form of segment sums over index tensors that have no layout yet (default [`SegmentSum::Sorted`]).
    pub fn set_segment_sum(&self, form: SegmentSum) {
        self.segment_sum.set(form);
    }

    /// Sums over the constant `idx` (`[E, 1]`, values `dst`, `n` segments) take the form `form`, with
    /// the layout computed here (sort order, segment bounds, padded table as initializers).
    pub fn fixed_segment_layout(&self, idx: &str, dst: &[i64], n: usize, form: SegmentSum) {
        let e = dst.len();
        let mut perm: Vec<i64> = (0..e as i64).collect();
        perm.sort_by_key(|&i| dst[i as usize]); // stable: ties keep edge order, as TopK does
        let mut counts = vec![0i64; n];
        for &d in dst {
            counts[d as usize] += 1;
        }
        let mut acc = 0;
        let ends: Vec<i64> = counts
            .iter()
            .map(|c| {
                acc += c;
                acc
            })
            .collect();
        let starts: Vec<i64> = ends.iter().zip(&counts).map(|(a, c)| a - c).collect();
        let seg = match form {
            SegmentSum::Buckets => {
                let mut lists: Vec<Vec<i64>> = vec![Vec::new(); n];
                perm.iter().for_each(|&i| lists[dst[i as usize] as usize].push(i));
                let mut order = vec![0i64; n];
                let mut row = 0;
                let buckets = degree_buckets(dst, n)
                    .into_iter()
                    .map(|(targets, k)| {
                        let mut table = vec![e as i64; targets.len() * k];
                        for (r, &t) in targets.iter().enumerate() {
                            table[r * k..r * k + lists[t].len()].copy_from_slice(&lists[t]);
                            order[t] = row;
                            row += 1;
                        }
                        let shape = self.ints("bucket_shape", &[targets.len() as i64, k as i64, -1]);
                        (self.init_i64("segment_bucket", &[targets.len() * k], table), shape)
                    })
                    .collect();
                let in_order = order.iter().enumerate().all(|(i, &r)| r == i as i64);
                Segments {
                    buckets,
                    order: (!in_order).then(|| self.init_i64("segment_order", &[n], order)),
                    ..Segments::bare(form, idx, &self.ints("segments", &[n as i64]))
                }
            }
            SegmentSum::ScatterNd | SegmentSum::ScatterElements => Segments::bare(form, idx, &self.ints("segments", &[n as i64])),
            SegmentSum::Sorted => Segments {
                perm: self.init_i64("segment_perm", &[e], perm),
                e_shape: self.ints("edges", &[e as i64]),
                starts: self.init_i64("segment_starts", &[n], starts),
                ends: self.init_i64("segment_ends", &[n], ends),
                ..Segments::bare(form, idx, &self.ints("segments", &[n as i64]))
            },
        };
        self.segments.borrow_mut().insert(idx.to_string(), seg);
    }

    /// The sorted layout of `idx` `[E + N, 1]` = the input targets `edge_dst` `[E]`, then one self-loop
    /// per node in node order: only the input targets are sorted, and each sum adds the loops' rows
    /// (the last N) to the sorted sums of the edges. Input already in target order then stays sorted,
    /// where ONNX Runtime's TopK runs ~5× faster (decisions §5). Other forms: nothing is made.
    pub fn looped_segment_layout(&self, idx: &str, edge_dst: &str, n_shape: &str) {
        if !matches!(self.segment_sum.get(), SegmentSum::Sorted | SegmentSum::Buckets) {
            return;
        }
        let (perm, e_shape, starts, ends) = self.sorted_bounds(edge_dst, n_shape);
        let seg = Segments {
            perm,
            // the zero row past all E + N messages; the loops from row E on
            e_shape: self.op1("Shape", &self.squeeze(idx, 1)),
            starts,
            ends,
            tail: Some(e_shape),
            ..Segments::bare(SegmentSum::Sorted, idx, n_shape)
        };
        self.segments.borrow_mut().insert(idx.to_string(), seg);
    }

    /// Rows `start..` of `x` (`start` `[1]`).
    fn rows_from(&self, x: &str, start: &str) -> String {
        self.node("Slice", &[x, start, &self.ints("end", &[i64::MAX]), &self.ints("first", &[0])], &[])
    }

    /// The in-graph layout of the segments of `idx` for `form`.
    fn segment_plan(&self, idx_col: &str, n_shape: &str, form: SegmentSum) -> Segments {
        // padded lists have a data-dependent width, which tract cannot shape: fixed layouts only
        let form = if form == SegmentSum::Buckets { SegmentSum::Sorted } else { form };
        let mut seg = Segments::bare(form, idx_col, n_shape);
        if matches!(form, SegmentSum::ScatterNd | SegmentSum::ScatterElements) {
            return seg;
        }
        let idx = self.squeeze(idx_col, 1);
        (seg.perm, seg.e_shape, seg.starts, seg.ends) = self.sorted_bounds(&idx, n_shape);
        seg
    }

    /// The stable order of the 1-D targets `idx` (in `0..N`, `n_shape` = `[N]`) and each target's
    /// first and past-the-end position in that order: `(perm [E], E as [1], starts [N], ends [N])`;
    /// perm and the bounds are i32 ([`Lower::idx32`]), E i64 (a Slice start).
    fn sorted_bounds(&self, idx: &str, n_shape: &str) -> (String, String, String, String) {
        let (_, perm) = self.sort(idx);
        let perm = self.idx32(&perm);
        // counts and bounds in f32 (exact below 2^24 edges; tract keeps integer shape arithmetic
        // symbolic), the bounds as i32 indices
        let int = |x: &str| self.idx32(x);
        let attrs = [("axis", Attr::Int(0)), ("reduction", Attr::Str("add".into()))];
        let e_shape = self.op1("Shape", idx);
        let counts = self.node("ScatterElements", &[&self.fill(n_shape, 0.0), idx, &self.fill(&e_shape, 1.0)], &attrs);
        let ends = self.node("CumSum", &[&counts, &self.index(0)], &[]);
        (perm, e_shape, int(&self.op2("Sub", &ends, &counts)), int(&ends))
    }

    /// `out[seg.idx[e]] += vals[e]` into zeros of `shape`.
    fn segment_sum(&self, seg: &Segments, shape: &str, vals: &str) -> String {
        if seg.form == SegmentSum::ScatterNd {
            let zeros = self.fill(shape, 0.0);
            return self.node("ScatterND", &[&zeros, &seg.idx_col, vals], &[("reduction", Attr::Str("add".into()))]);
        }
        // one row per message: [E, R]
        let m = self.node("Flatten", &[vals], &[("axis", Attr::Int(1))]);
        let sums = match seg.form {
            SegmentSum::ScatterNd => unreachable!(),
            SegmentSum::ScatterElements => {
                let r = self.rows(&self.op1("Shape", &m), &self.ints("second", &[1]));
                self.scatter_rows(&self.fill(&self.concat(&[&seg.n_shape, &r], 0), 0.0), &seg.idx_col, &m, "add")
            }
            SegmentSum::Sorted => {
                // a zero row E leads the target-sorted messages
                let sorted = self.op2("Pad", &self.node("Cast", &[&m], &[("to", Attr::Int(11))]), &self.ints("pad_bottom", &[0, 0, 1, 0]));
                let sums = self.sorted_sums(seg, &self.rows(&sorted, &self.concat(&[&self.idx32(&seg.e_shape), &seg.perm], 0)));
                match &seg.tail {
                    Some(e) => self.op2("Add", &sums, &self.rows_from(&m, e)),
                    None => sums,
                }
            }
            SegmentSum::Buckets => {
                // a zero row E for empty slots
                let m = self.op2("Pad", &m, &self.ints("pad_bottom", &[0, 0, 1, 0]));
                self.bucket_sums(seg, |table| self.rows(&m, table))
            }
        };
        self.op2("Reshape", &sums, shape)
    }

    /// `out[dst] += w · h[src]`, shaped like `h`; `dst` is `[E, 1]`, `w` per message ([`EdgeWeights`]).
    /// A source N (h's row count) reads a zero row: no message.
    pub fn propagate(&self, h: &str, src: &str, dst: &str, w: Option<EdgeWeights>) -> String {
        let shape = self.op1("Shape", h);
        let seg = self.segments_of(&shape, dst);
        // h and a zero row N: the source of no message
        let h = self.concat(&[h, &self.zero_row(&shape)], 0);
        if seg.form == SegmentSum::Buckets {
            // each slot's source row and weight, gathered from the constant edge lists (folded at
            // load), then the rows of h (the zero row for empty slots) weighted in one pass
            let h = self.node("Flatten", &[&h], &[("axis", Attr::Int(1))]);
            let src = self.concat(&[src, &seg.n_shape], 0);
            let w = w.map(|w| {
                let f = self.node("Flatten", &[w.name()], &[("axis", Attr::Int(1))]);
                (self.concat(&[&f, &self.zero_row(&self.op1("Shape", &f))], 0), w)
            });
            let sums = self.bucket_sums(&seg, |table| {
                let m = self.rows(&h, &self.rows(&src, table));
                match &w {
                    Some((f, w)) => self.weigh(&m, &self.rows(f, table), w),
                    None => m,
                }
            });
            return self.op2("Reshape", &sums, &shape);
        }
        if seg.form != SegmentSum::Sorted {
            // ScatterND, ScatterElements
            let mut m = self.rows(&h, src);
            if let Some(w) = w {
                m = self.weigh(&m, w.name(), &w);
            }
            return self.segment_sum(&seg, &shape, &m);
        }
        // the messages in target order straight from h, after a zero message (source = the zero
        // row N), weighted in f32 (as burn does) and summed in f64: tract has no fast kernel for
        // f64 products (the gene GCN spent 36 % of its time in them) and gathers half the bytes
        let n_shape = self.rows(&shape, &self.ints("first", &[0]));
        let sorted_src = self.concat(&[&self.idx32(&n_shape), &self.idx32(&self.rows(src, &seg.perm))], 0);
        let mut m = self.rows(&h, &sorted_src);
        if let Some(w) = w {
            let sorted = self.concat(&[&self.zero_row(&self.op1("Shape", w.name())), &self.rows(w.name(), &seg.perm)], 0);
            m = self.weigh(&m, &sorted, &w);
        }
        let m = self.node("Cast", &[&self.node("Flatten", &[&m], &[("axis", Attr::Int(1))])], &[("to", Attr::Int(11))]);
        let sums = self.op2("Reshape", &self.sorted_sums(&seg, &m), &shape);
        let Some(e) = &seg.tail else {
            return sums;
        };
        // the loops: one message per target, in target order
        let mut m = self.rows(&h, &self.rows_from(src, e));
        if let Some(w) = w {
            m = self.weigh(&m, &self.rows_from(w.name(), e), &w);
        }
        self.op2("Add", &sums, &m)
    }

    /// The messages `m` times their weights `rows` (rows of `how`'s tensor, in `m`'s order).
    fn weigh(&self, m: &str, rows: &str, how: &EdgeWeights) -> String {
        match *how {
            EdgeWeights::Plain(_) => self.op2("Mul", m, rows),
            EdgeWeights::Heads { heads, width, .. } => {
                let mut spread = vec![0f32; heads * heads * width];
                for h in 0..heads {
                    spread[h * heads * width + h * width..h * heads * width + (h + 1) * width].fill(1.0);
                }
                let spread = self.floats("head_spread", &[heads, heads * width], &spread);
                let w = self.op2("MatMul", &self.reshape(rows, &[-1, heads as i64]), &spread);
                self.op2("Mul", m, &self.reshape(&w, &[-1, heads as i64, width as i64]))
            }
        }
    }

    /// `[N, R]`: per bucket of `seg` (Buckets), `slots(table)` gives its `[n_b·K_b, R]` rows, summed
    /// over K_b; the bucket sums in target order.
    fn bucket_sums(&self, seg: &Segments, slots: impl Fn(&str) -> String) -> String {
        let sums: Vec<String> =
            seg.buckets.iter().map(|(table, shape)| self.reduce("Sum", &self.op2("Reshape", &slots(table), shape), &[1], false)).collect();
        let all = if sums.len() == 1 { sums[0].clone() } else { self.concat(&sums.iter().map(String::as_str).collect::<Vec<_>>(), 0) };
        match &seg.order {
            Some(order) => self.rows(&all, order),
            None => all,
        }
    }

    /// f32 zeros `[1, …]` shaped like one row of a tensor of shape `shape`.
    fn zero_row(&self, shape: &str) -> String {
        let rest = self.node("Slice", &[shape, &self.ints("second", &[1]), &self.ints("end", &[i64::MAX])], &[]);
        self.fill(&self.concat(&[&self.ints("one", &[1]), &rest], 0), 0.0)
    }

    /// Segment sums `[N, R]` (f32) of the f64 messages `m` `[E + 1, R]`: a zero row, then the
    /// messages in target order; prefix sums differenced at the segment bounds.
    fn sorted_sums(&self, seg: &Segments, m: &str) -> String {
        let c = self.node("CumSum", &[m, &self.index(0)], &[]);
        let s = self.op2("Sub", &self.rows(&c, &seg.ends), &self.rows(&c, &seg.starts));
        self.node("Cast", &[&s], &[("to", Attr::Int(1))])
    }

    /// `init` `[N, C]` with each segment's max of the rows of `x` `[E, C]` (segments of `idx`, `[E, 1]`;
    /// `shape` the output's runtime shape), in [`Lower::segment_chunks`]: each chunk's max an n-ary
    /// Max of Gathers, then a ScatterElements max of the chunk maxima. Layouts other than the sorted
    /// one take [`Lower::segment_max`].
    pub fn segment_max_chunked(&self, init: &str, shape: &str, idx: &str, x: &str) -> String {
        let Some(chunks) = self.segment_chunks(shape, idx) else {
            return self.segment_max(init, idx, x);
        };
        self.scatter_rows(init, &chunks.segment, &self.chunk_reduce(&chunks, x, "Max", f32::MIN), "max")
    }

    /// Zeros of `shape` `[N, C]` with each segment's sum of the rows of `x` `[E, C]`, in
    /// [`Lower::segment_chunks`] (chunk sums an n-ary Sum of Gathers, then a ScatterElements add of
    /// the chunk sums, which ONNX Runtime runs in order on one thread: same sums at any thread count).
    /// Layouts other than the sorted one take [`Lower::scatter_add`].
    pub fn segment_sum_chunked(&self, shape: &str, idx: &str, x: &str) -> String {
        let Some(chunks) = self.segment_chunks(shape, idx) else {
            return self.scatter_add(shape, idx, x);
        };
        self.scatter_rows(&self.fill(shape, 0.0), &chunks.segment, &self.chunk_reduce(&chunks, x, "Sum", 0.0), "add")
    }

    /// `[T, C]`: each chunk's `op` (an n-ary Max or Sum) over its rows of `x`, empty slots reading `pad`.
    fn chunk_reduce(&self, chunks: &Chunks, x: &str, op: &str, pad: f32) -> String {
        let width = self.rows(&self.op1("Shape", x), &self.ints("second", &[1]));
        let padded = self.concat(&[x, &self.fill(&self.concat(&[&self.ints("one", &[1]), &width], 0), pad)], 0);
        let rows: Vec<String> = chunks.slots.iter().map(|slot| self.rows(&padded, slot)).collect();
        self.node(op, &rows.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    }

    /// The segments of `idx` (sorted layout) cut into chunks of at most [`MAX_CHUNK`] rows in target
    /// order: T ≤ E / [`MAX_CHUNK`] + N chunks, so a reduction reads E rows in Gathers (race-free,
    /// parallel) and scatters T; memory linear in E + N. `None` for layouts other than the sorted one.
    fn segment_chunks(&self, shape: &str, idx: &str) -> Option<Chunks> {
        let seg = self.segments_of(shape, idx);
        if seg.form != SegmentSum::Sorted || seg.tail.is_some() {
            return None;
        }
        if let Some(chunks) = &seg.chunks {
            return Some(chunks.clone());
        }
        let w = MAX_CHUNK as f32;
        // chunk bookkeeping in f32 (exact below 2^24), as the segment bounds
        let float = |v: &str| self.node("Cast", &[v], &[("to", Attr::Int(1))]);
        let int = |v: &str| self.idx32(v);
        let starts = float(&seg.starts);
        let chunks = self.op1("Ceil", &self.op2("Div", &self.op2("Sub", &float(&seg.ends), &starts), &self.scalar("chunk", w)));
        let chunk_ends = self.node("CumSum", &[&chunks, &self.index(0)], &[]);
        let chunk_starts = self.op2("Sub", &chunk_ends, &chunks);
        let total = int(&self.total(&chunks, &self.scalar("zero", 0.0)));
        let t = self.node("Range", &[&self.index32(0), &total, &self.index32(1)], &[]);
        // the segment of each chunk: a 1 where each segment's chunks start, summed up (empty
        // segments add their 1 to the next one's start, which the sum skips past); zeros of a
        // data-dependent length as min(0..T, 0): tract's ConstantOfShape needs a known shape, and
        // it turns a product with 0 into a broadcast that loses the Range's length
        let range = self.node("Range", &[&self.index32(0), &self.op2("Add", &total, &self.index32(1)), &self.index32(1)], &[]);
        let zeros = self.op2("Min", &float(&range), &self.scalar("zero", 0.0));
        let attrs = [("axis", Attr::Int(0)), ("reduction", Attr::Str("add".into()))];
        let marks = self.node("ScatterElements", &[&zeros, &int(&chunk_starts), &self.fill(&self.op1("Shape", &chunks), 1.0)], &attrs);
        let segment = int(&self.op2("Sub", &self.rows(&self.node("CumSum", &[&marks, &self.index(0)], &[]), &t), &self.scalar("one", 1.0)));
        // each chunk's first position: its segment's start + W · its rank in the segment
        let rank = self.op2("Sub", &float(&t), &self.rows(&chunk_starts, &segment));
        let first = int(&self.op2("Add", &self.rows(&starts, &segment), &self.op2("Mul", &rank, &self.scalar("chunk", w))));
        // slot j: the row at position first + j, or the pad row E past the segment's end
        let (end, e) = (self.rows(&seg.ends, &segment), self.idx32(&self.rows(&self.op1("Shape", &seg.perm), &self.index(0))));
        let order = self.concat(&[&seg.perm, &self.unsqueeze(&e, 0)], 0);
        let slots = (0..MAX_CHUNK as i64)
            .map(|j| {
                let pos = self.op2("Add", &first, &self.index32(j as i32));
                self.rows(&order, &self.node("Where", &[&self.op2("Less", &pos, &end), &pos, &e], &[]))
            })
            .collect();
        let chunks = Chunks { segment: self.column(&segment), slots };
        self.segments.borrow_mut().get_mut(idx).expect("layout made above").chunks = Some(chunks.clone());
        Some(chunks)
    }

    /// `init` with `out[idx[e]] = max(out[idx[e]], vals[e])` (ScatterElements max; `idx` `[E, 1]`).
    pub fn segment_max(&self, init: &str, idx: &str, vals: &str) -> String {
        self.scatter_rows(init, idx, vals, "max")
    }

    /// `data` `[N, …]` with each row `vals[e]` `[E, …]` combined into row `idx[e]` (`idx` `[E, 1]`)
    /// by `reduction` (`add`, `max`): ScatterElements, which ONNX Runtime runs on one thread, in order.
    pub fn scatter_rows(&self, data: &str, idx: &str, vals: &str, reduction: &str) -> String {
        let idx = self.op2("Expand", idx, &self.op1("Shape", vals));
        self.node("ScatterElements", &[data, &idx, vals], &[("axis", Attr::Int(0)), ("reduction", Attr::Str(reduction.into()))])
    }

    /// Softmax of `score [E, …]` over the edges of each target `dst` (`[E]`, and `[E, 1]` as
    /// `dst_col`); `shape` is the runtime shape of the per-node result. The max is a shift only.
    pub fn segment_softmax(&self, score: &str, dst: &str, dst_col: &str, shape: &str) -> String {
        let max = self.segment_max(&self.fill(shape, -1e30), dst_col, score);
        let p = self.op1("Exp", &self.op2("Sub", score, &self.rows(&max, dst)));
        let denom = self.scatter_add(shape, dst_col, &p);
        self.op2("Div", &p, &self.rows(&denom, dst))
    }

    /// Outputs `logits` and `probabilities` `[rows, k]`; the finished model. With up to
    /// [`MAX_SLICED_CLASSES`] classes the softmax's max and sum are element-wise over the classes.
    pub fn finish_classifier(self, logits: &str, rows: &str, k: usize, head: Head, metadata: Vec<(String, String)>) -> ModelProto {
        self.output_from(logits, "logits", &dims(rows, k));
        match head {
            Head::Softmax if k > MAX_SLICED_CLASSES => self.node_to("Softmax", &[logits], &["probabilities"], &[("axis", Attr::Int(-1))]),
            // Exp(x − max) / Σ on xᵀ, max and Σ element-wise over its k rows, rather than Softmax:
            // tract reduces a short last axis element by element (Softmax over Cora's [2708, 7]:
            // 1.75 ms; ReduceMax 1.1 ms; this form: 0.1 ms)
            Head::Softmax => {
                let t = self.transpose(logits, &[1, 0]);
                let rows = |x: &str| -> Vec<String> {
                    (0..k as i64)
                        .map(|i| self.node("Slice", &[x, &self.ints("row", &[i]), &self.ints("row_end", &[i + 1]), &self.axes(&[0])], &[]))
                        .collect()
                };
                let all = |op: &str, x: &str| {
                    let r = rows(x);
                    self.node(op, &r.iter().map(String::as_str).collect::<Vec<_>>(), &[])
                };
                let p = self.op1("Exp", &self.op2("Sub", &t, &all("Max", &t)));
                let p = self.op2("Div", &p, &all("Sum", &p));
                self.node_to("Transpose", &[&p], &["probabilities"], &[("perm", Attr::Ints(vec![1, 0]))]);
            }
            Head::Sigmoid => self.node_to("Sigmoid", &[logits], &["probabilities"], &[]),
        }
        self.output("probabilities", Elem::F32, &dims(rows, k));
        self.finish(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::degree_buckets;

    #[test]
    fn buckets_cover_every_target_once_and_keep_hubs_apart() {
        // a ring (in-degree 1 everywhere): one bucket, targets in order
        let ring: Vec<i64> = (0..100).map(|i| (i + 1) % 100).collect();
        assert_eq!(degree_buckets(&ring, 100), vec![((0..100).collect(), 1)]);
        // a star into target 0 plus the ring: the hub alone, as wide as its in-degree
        let star: Vec<i64> = ring.iter().copied().chain(std::iter::repeat_n(0, 500)).collect();
        let b = degree_buckets(&star, 100);
        assert_eq!(b.last().unwrap(), &(vec![0], 501));
        assert_eq!(b.iter().map(|(t, _)| t.len()).sum::<usize>(), 100);
        // a target with no edges still has a row (width at least 1); no targets: one empty bucket
        assert_eq!(degree_buckets(&[1, 1], 3), vec![(vec![0, 2, 1], 2)]);
        assert_eq!(degree_buckets(&[], 0), vec![(Vec::new(), 1)]);
    }
}
