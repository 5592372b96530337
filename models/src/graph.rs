//! Fixed graphs for message passing: symmetric GCN normalization with self-loops.

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

/// A directed edge list with weights, self-loops included: message `src -> dst` scaled by `weight`.
/// Built from an undirected graph as `D^-1/2 (A + I) D^-1/2` (Kipf & Welling).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedGraph {
    /// Number of nodes `N`.
    pub num_nodes: usize,
    /// Source node of each edge, length `E`.
    pub src: Vec<i64>,
    /// Destination node of each edge, length `E`.
    pub dst: Vec<i64>,
    /// Normalized weight of each edge, length `E`.
    pub weight: Vec<f32>,
}

impl NormalizedGraph {
    /// `edges` are undirected pairs of node positions (each pair once, either order; duplicates
    /// and self-loops are dropped).
    pub fn gcn(num_nodes: usize, edges: &[(u32, u32)]) -> Self {
        let mut pairs: Vec<(u32, u32)> = edges.iter().filter(|(a, b)| a != b).map(|&(a, b)| (a.min(b), a.max(b))).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut degree = vec![1f32; num_nodes]; // self-loop
        for &(a, b) in &pairs {
            degree[a as usize] += 1.0;
            degree[b as usize] += 1.0;
        }
        let inv: Vec<f32> = degree.iter().map(|d| 1.0 / d.sqrt()).collect();
        let cap = 2 * pairs.len() + num_nodes;
        let (mut src, mut dst, mut weight) = (Vec::with_capacity(cap), Vec::with_capacity(cap), Vec::with_capacity(cap));
        for &(a, b) in &pairs {
            let w = inv[a as usize] * inv[b as usize];
            src.extend([a as i64, b as i64]);
            dst.extend([b as i64, a as i64]);
            weight.extend([w, w]);
        }
        for i in 0..num_nodes {
            src.push(i as i64);
            dst.push(i as i64);
            weight.push(inv[i] * inv[i]);
        }
        Self { num_nodes, src, dst, weight }
    }

    /// Number of directed edges `E`, self-loops included.
    pub fn num_edges(&self) -> usize {
        self.src.len()
    }

    /// The graph as tensors on a device, for the burn forward.
    pub fn tensors(&self, device: &Device) -> GraphTensors {
        let e = self.num_edges();
        GraphTensors {
            src: Tensor::from_data(TensorData::new(self.src.clone(), [e]), device),
            dst: Tensor::from_data(TensorData::new(self.dst.clone(), [e]), device),
            weight: Tensor::from_data(TensorData::new(self.weight.clone(), [e, 1, 1]), device),
        }
    }

    /// The dense normalized adjacency `[N, N]`, row = destination.
    pub fn dense(&self) -> Vec<f32> {
        let n = self.num_nodes;
        let mut a = vec![0f32; n * n];
        for i in 0..self.num_edges() {
            a[self.dst[i] as usize * n + self.src[i] as usize] += self.weight[i];
        }
        a
    }
}

/// Graph tensors for [`propagate`].
#[derive(Debug, Clone)]
pub struct GraphTensors {
    /// `[E]` source node of each edge.
    pub src: Tensor<1, Int>,
    /// `[E]` destination node of each edge.
    pub dst: Tensor<1, Int>,
    /// `[E, 1, 1]`
    pub weight: Tensor<3>,
}

/// One step of weighted message passing on node-major features `h [N, B, C]`:
/// `out[dst] += weight * h[src]` (gather + scatter-add; exported as Gather + ScatterND add).
pub fn propagate(h: Tensor<3>, g: &GraphTensors) -> Tensor<3> {
    let [n, b, c] = h.dims();
    let device = h.device();
    let messages = h.select(0, g.src.clone()) * g.weight.clone();
    Tensor::zeros([n, b, c], &device).select_assign(0, g.dst.clone(), messages, IndexingUpdateOp::Add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_dense_formula() {
        let _rng = crate::test_rng();
        // path 0-1-2 plus an isolated node 3, duplicate and self-loop in the input
        let g = NormalizedGraph::gcn(4, &[(0, 1), (1, 0), (1, 2), (2, 2)]);
        assert_eq!(g.num_edges(), 4 + 4);
        let a = g.dense();
        let d = [2f32, 3., 2., 1.];
        assert!((a[1] - 1.0 / (d[0] * d[1]).sqrt()).abs() < 1e-6);
        assert!((a[5] - 1.0 / 3.0).abs() < 1e-6);
        assert!((a[15] - 1.0).abs() < 1e-6);
        assert_eq!(a[2], 0.0);
    }

    #[test]
    fn propagate_equals_dense_matmul() {
        let _rng = crate::test_rng();
        let device = Device::flex();
        let g = NormalizedGraph::gcn(5, &[(0, 1), (1, 2), (3, 4), (0, 4)]);
        let h = Tensor::<3>::random([5, 2, 3], burn::tensor::Distribution::Default, &device);
        let sparse = crate::to_vec(propagate(h.clone(), &g.tensors(&device)));
        let a = Tensor::<2>::from_data(TensorData::new(g.dense(), [5, 5]), &device);
        let dense = crate::to_vec(a.matmul(h.reshape([5, 6])));
        for (x, y) in sparse.iter().zip(&dense) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
