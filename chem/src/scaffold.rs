//! Bemis–Murcko scaffold as an order-independent key.

use super::{ATOM_FEATURES, MolGraph, layout};

fn mix(mut h: u64, x: u64) -> u64 {
    // splitmix64-style mixing; stable across platforms and Rust versions
    h ^= x.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(h << 6).wrapping_add(h >> 2);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

fn str_hash(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3))
}

pub(super) fn key(m: &MolGraph) -> String {
    let n = m.num_atoms;
    let mut adj: Vec<Vec<(usize, u8)>> = vec![Vec::new(); n];
    for (k, &(a, b)) in m.bonds.iter().enumerate() {
        let o = m.bond_orders.get(k).copied().unwrap_or(1);
        adj[a as usize].push((b as usize, o));
        adj[b as usize].push((a as usize, o));
    }
    // strip side chains: repeatedly remove atoms with at most one remaining neighbour
    let mut alive = vec![true; n];
    let mut deg: Vec<usize> = adj.iter().map(|a| a.len()).collect();
    let mut stack: Vec<usize> = (0..n).filter(|&i| deg[i] <= 1).collect();
    while let Some(u) = stack.pop() {
        if !alive[u] {
            continue;
        }
        alive[u] = false;
        for &(v, _) in &adj[u] {
            if alive[v] {
                deg[v] -= 1;
                if deg[v] <= 1 {
                    stack.push(v);
                }
            }
        }
    }
    if !alive.iter().any(|&a| a) {
        return String::new();
    }
    // keep exocyclic / exo-linker double-bonded terminal atoms (C=O on a ring)
    let core = alive.clone();
    for i in 0..n {
        if !core[i] && adj[i].len() == 1 {
            let (j, o) = adj[i][0];
            if core[j] && (o == 2 || o == 3) {
                alive[i] = true;
            }
        }
    }
    let atoms: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
    let feat = |i: usize, k: usize| m.features[i * ATOM_FEATURES + k];
    let mut label: Vec<u64> = vec![0; n];
    for &i in &atoms {
        let mut h = str_hash(&m.elements[i]);
        h = mix(h, feat(i, layout::AROMATIC) as u64);
        h = mix(h, (feat(i, layout::FORMAL_CHARGE) as i64) as u64);
        label[i] = h;
    }
    let rounds = atoms.len().clamp(2, 16);
    for _ in 0..rounds {
        let mut next = label.clone();
        for &i in &atoms {
            let mut nb: Vec<u64> = adj[i].iter().filter(|(j, _)| alive[*j]).map(|&(j, o)| mix(label[j], o as u64)).collect();
            nb.sort_unstable();
            next[i] = nb.into_iter().fold(mix(label[i], 0xA5), mix);
        }
        label = next;
    }
    let mut all: Vec<u64> = atoms.iter().map(|&i| label[i]).collect();
    all.sort_unstable();
    let nb = m.bonds.iter().filter(|&&(a, b)| alive[a as usize] && alive[b as usize]).count();
    let h = all.into_iter().fold(mix(atoms.len() as u64, nb as u64), mix);
    format!("{}a{}b-{:016x}", atoms.len(), nb, h)
}
