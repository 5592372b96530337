//! From parsed SMILES to the per-atom quantities DeepChem reads from RDKit: hydrogens, kekulization,
//! rings, aromaticity (RDKit's default model), conjugation, hybridization, radicals.

#![allow(clippy::needless_range_loop)] // parallel per-atom arrays are indexed on purpose

use std::collections::VecDeque;

use super::SmilesError;
use super::elements::{N_OUTER, VALENCES};
use super::parse::{ARO, RawAtom, RawBond};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hyb {
    S,
    Sp,
    Sp2,
    Sp3,
    Sp3d,
    Sp3d2,
    Unspecified,
}

#[derive(Debug)]
pub(crate) struct Mol {
    pub z: Vec<u8>,
    pub charge: Vec<i8>,
    pub hx: Vec<u8>,   // explicit Hs (brackets, removed [H] atoms)
    pub himp: Vec<u8>, // implicit Hs
    pub rad: Vec<u8>,
    pub bonds: Vec<(usize, usize)>,
    pub order: Vec<u8>,                // Kekulé order 1..=4
    pub adj: Vec<Vec<(usize, usize)>>, // (neighbour, bond)
    pub ring_bond: Vec<bool>,
    pub arom: Vec<bool>,
    pub arom_bond: Vec<bool>,
    pub conj: Vec<bool>,
    pub hyb: Vec<Hyb>,
}

fn valences(z: u8) -> &'static [i8] {
    if z == 0 { &[-1] } else { VALENCES[z as usize - 1] }
}
fn n_outer(z: u8) -> i32 {
    if z == 0 { 0 } else { N_OUTER[z as usize - 1] as i32 }
}
fn default_valence(z: i32) -> i32 {
    if (1..=118).contains(&z) { VALENCES[z as usize - 1][0] as i32 } else { -1 }
}
/// RDKit's `isEarlyAtom`: fewer than 4 outer electrons (hydrogen counts as early).
fn early(z: u8) -> bool {
    n_outer(z) < 4
}
/// RDKit's crude electronegativity order: more outer electrons, then lower atomic number.
fn more_en(a: u8, b: u8) -> bool {
    let (na, nb) = (n_outer(a), n_outer(b));
    na > nb || (na == nb && a < b)
}

fn symbol(z: u8) -> &'static str {
    if z == 0 { "*" } else { super::elements::SYMBOLS[z as usize - 1] }
}

impl Mol {
    pub fn build(atoms: Vec<RawAtom>, raw: Vec<RawBond>) -> Result<Mol, SmilesError> {
        let n = atoms.len();
        let mut adj = vec![Vec::new(); n];
        for (k, b) in raw.iter().enumerate() {
            adj[b.a].push((b.b, k));
            adj[b.b].push((b.a, k));
        }
        // 1. implicit hydrogens of organic-subset atoms (aromatic bonds count 1.5, as RDKit).
        let mut himp = vec![0u8; n];
        for i in 0..n {
            let a = &atoms[i];
            if a.bracket || a.z == 0 {
                continue;
            }
            let mut acc = 0.0f64;
            for &(_, k) in &adj[i] {
                acc += if raw[k].order == ARO { 1.5 } else { raw[k].order as f64 };
            }
            let vals = valences(a.z);
            if a.arom {
                let dv = vals[0] as f64;
                himp[i] = if acc > dv { 0 } else { (dv - (acc + 0.1).round()).max(0.0) as u8 };
            } else {
                let ev = (acc + 0.1).round() as i32;
                match vals.iter().map(|&v| v as i32).find(|&v| v >= 0 && v >= ev) {
                    Some(v) => himp[i] = (v - ev) as u8,
                    None if *vals.last().unwrap() == -1 => {}
                    None => return Err(bad_valence(a.z, ev, i)),
                }
            }
        }
        // 2. drop hydrogen atoms RDKit's RemoveHs would drop; they become explicit Hs of their neighbour.
        let mut keep = vec![true; n];
        let mut hx: Vec<u8> = atoms.iter().map(|a| a.h).collect();
        for i in 0..n {
            let a = &atoms[i];
            if a.z != 1 || a.isotope != 0 || a.charge != 0 || adj[i].len() != 1 {
                continue;
            }
            let (j, k) = adj[i][0];
            if atoms[j].z == 1 || raw[k].order != 1 {
                continue;
            }
            // keep an H that alone defines double-bond stereo ([H]/C=C/C, not [H]/C(C)=C/C)
            if raw[k].dir && adj[j].len() == 2 && adj[j].iter().any(|&(_, kk)| raw[kk].order == 2) {
                continue;
            }
            keep[i] = false;
            hx[j] = hx[j].saturating_add(1);
        }
        let mut map = vec![usize::MAX; n];
        let mut m = 0;
        for i in 0..n {
            if keep[i] {
                map[i] = m;
                m += 1;
            }
        }
        let at: Vec<&RawAtom> = (0..n).filter(|&i| keep[i]).map(|i| &atoms[i]).collect();
        let himp: Vec<u8> = (0..n).filter(|&i| keep[i]).map(|i| himp[i]).collect();
        let hx: Vec<u8> = (0..n).filter(|&i| keep[i]).map(|i| hx[i]).collect();
        let mut bonds = Vec::new();
        let mut border = Vec::new();
        for b in &raw {
            if keep[b.a] && keep[b.b] {
                let (x, y) = (map[b.a], map[b.b]);
                bonds.push((x.min(y), x.max(y)));
                border.push(b.order);
            }
        }
        let n = m;
        let mut adj = vec![Vec::new(); n];
        for (k, &(a, b)) in bonds.iter().enumerate() {
            adj[a].push((b, k));
            adj[b].push((a, k));
        }
        let ring_bond = ring_bonds(n, &adj);
        let arom_in: Vec<bool> = at.iter().map(|a| a.arom).collect();
        for i in 0..n {
            if arom_in[i] && !adj[i].iter().any(|&(_, k)| ring_bond[k]) {
                return Err(SmilesError::AromaticNotInRing { element: symbol(at[i].z).to_string(), atom: i });
            }
        }
        let mut mol = Mol {
            z: at.iter().map(|a| a.z).collect(),
            charge: at.iter().map(|a| a.charge).collect(),
            hx,
            himp,
            rad: vec![0; n],
            bonds,
            order: border,
            adj,
            ring_bond,
            arom: vec![false; n],
            arom_bond: Vec::new(),
            conj: Vec::new(),
            hyb: Vec::new(),
        };
        mol.kekulize(&arom_in)?;
        mol.check_valence()?;
        mol.assign_radicals(&at);
        mol.aromaticity();
        // RDKit keeps Hs on aromatic heteroatoms explicit ([nH]), so their implicit valence is 0
        for i in 0..n {
            if mol.arom[i] && mol.z[i] != 6 && mol.himp[i] > 0 {
                mol.hx[i] += mol.himp[i];
                mol.himp[i] = 0;
            }
        }
        mol.conjugation();
        mol.hybridization();
        Ok(mol)
    }

    pub fn degree(&self, i: usize) -> i32 {
        self.adj[i].len() as i32
    }
    pub fn total_h(&self, i: usize) -> i32 {
        (self.hx[i] + self.himp[i]) as i32
    }
    /// Explicit valence as RDKit counts it: bond orders plus explicit Hs.
    fn ev(&self, i: usize) -> i32 {
        self.adj[i].iter().map(|&(_, k)| self.order[k] as i32).sum::<i32>() + self.hx[i] as i32
    }

    fn kekulize(&mut self, arom_in: &[bool]) -> Result<(), SmilesError> {
        let n = self.z.len();
        let nb = self.bonds.len();
        // aromatic bonds outside rings become single
        let mut arom_edge = vec![false; nb];
        for k in 0..nb {
            if self.order[k] == ARO {
                if self.ring_bond[k] {
                    arom_edge[k] = true;
                } else {
                    self.order[k] = 1;
                }
            }
        }
        // which aromatic atoms need a double bond (RDKit's markDbondCands)
        let mut cand = vec![false; n];
        for i in 0..n {
            if !arom_in[i] {
                continue;
            }
            let mut sbo = self.total_h(i);
            for &(_, k) in &self.adj[i] {
                sbo += if arom_edge[k] { 1 } else { self.order[k] as i32 };
            }
            let z = self.z[i];
            let mut chg = self.charge[i] as i32;
            if early(z) {
                chg = -chg;
            }
            if z == 6 && chg > 0 {
                chg = -chg;
            }
            let dv = valences(z)[0] as i32 + chg;
            if self.degree(i) + self.total_h(i) >= dv {
                continue;
            }
            cand[i] = dv == sbo + 1;
        }
        // perfect matching of candidates over aromatic ring bonds, one component at a time
        let mut matched = vec![false; n];
        let mut seen = vec![false; n];
        for s in 0..n {
            if !cand[s] || seen[s] {
                continue;
            }
            let mut comp = vec![s];
            seen[s] = true;
            let mut q = 0;
            while q < comp.len() {
                let u = comp[q];
                q += 1;
                for &(v, k) in &self.adj[u] {
                    if arom_edge[k] && cand[v] && !seen[v] {
                        seen[v] = true;
                        comp.push(v);
                    }
                }
            }
            let mut budget = 50_000_000u64;
            let mut chosen = Vec::new();
            if !self.match_comp(&comp, &cand, &arom_edge, &mut matched, &mut chosen, &mut budget) {
                let bad = comp.iter().copied().find(|&u| !matched[u]).unwrap_or(s);
                return Err(SmilesError::Kekulize { atom: bad });
            }
            for k in chosen {
                self.order[k] = 2;
            }
        }
        for k in 0..nb {
            if self.order[k] == ARO {
                self.order[k] = 1;
            }
        }
        Ok(())
    }

    /// Perfect matching of `comp` by backtracking (most constrained atom first), with an explicit
    /// stack and a work budget so that hostile input can neither overflow the stack nor hang.
    fn match_comp(
        &self,
        comp: &[usize],
        cand: &[bool],
        edge: &[bool],
        matched: &mut [bool],
        chosen: &mut Vec<usize>,
        budget: &mut u64,
    ) -> bool {
        // frames: atom, its options (neighbour, bond), next option to try
        let mut frames: Vec<Frame> = Vec::new();
        let mut descend = true;
        loop {
            if descend {
                if *budget < comp.len() as u64 {
                    return false;
                }
                *budget -= comp.len() as u64;
                let mut best: Option<(usize, usize)> = None;
                for &u in comp {
                    if matched[u] {
                        continue;
                    }
                    let c = self.adj[u].iter().filter(|&&(v, k)| edge[k] && cand[v] && !matched[v]).count();
                    if best.is_none_or(|(_, bc)| c < bc) {
                        best = Some((u, c));
                    }
                }
                let Some((u, _)) = best else { return true };
                let opts = self.adj[u].iter().copied().filter(|&(v, k)| edge[k] && cand[v] && !matched[v]).collect();
                frames.push((u, opts, 0));
            }
            let Some((u, opts, next)) = frames.last_mut() else {
                return false;
            };
            if *next > 0 {
                // undo this frame's previous choice
                let (v, _) = opts[*next - 1];
                matched[*u] = false;
                matched[v] = false;
                chosen.pop();
            }
            if *next < opts.len() {
                let (v, k) = opts[*next];
                *next += 1;
                matched[*u] = true;
                matched[v] = true;
                chosen.push(k);
                descend = true;
            } else {
                frames.pop();
                descend = false;
            }
        }
    }

    fn check_valence(&self) -> Result<(), SmilesError> {
        for i in 0..self.z.len() {
            let z = self.z[i];
            if z == 0 {
                continue;
            }
            let ev = self.ev(i) + self.himp[i] as i32;
            let chg = self.charge[i] as i32;
            // own valence list for neutral atoms; a charged atom may take the valences of its
            // isoelectronic element (N+ like C, P- like S), anions also their own list shifted
            let own_max = *valences(z).last().unwrap() as i32;
            let ok = if chg == 0 {
                own_max < 0 || ev <= own_max
            } else {
                let iso = z as i32 - chg;
                let iso_ok = (1..=118).contains(&iso) && {
                    let m = *VALENCES[iso as usize - 1].last().unwrap() as i32;
                    m < 0 || ev <= m
                };
                let eff = if n_outer(z) >= 4 { ev - chg } else { ev + chg };
                iso_ok || own_max < 0 || (chg < 0 && eff <= own_max) || !(1..=118).contains(&iso) && eff <= own_max
            };
            if !ok {
                return Err(bad_valence(z, ev, i));
            }
        }
        Ok(())
    }

    /// RDKit's assignRadicals, for atoms without implicit Hs (bracket atoms).
    fn assign_radicals(&mut self, at: &[&RawAtom]) {
        for i in 0..self.z.len() {
            let z = self.z[i];
            if !at[i].bracket || z == 0 {
                continue;
            }
            let vals = valences(z);
            let nout = n_outer(z);
            let chg = self.charge[i] as i32;
            let tv = self.ev(i);
            if vals.len() == 1 && vals[0] == -1 {
                // metals without a valence list: an odd electron count on a bare ion
                if self.adj[i].is_empty() {
                    self.rad[i] = (nout - self.hx[i] as i32 - chg).rem_euclid(2) as u8;
                }
                continue;
            }
            let base = if z <= 2 { 2 } else { 8 };
            let mut nr = base - nout - tv + chg;
            if nr < 0 {
                nr = 0;
                if vals.len() > 1
                    && let Some(v) = vals.iter().map(|&v| v as i32).find(|&v| v - tv + chg >= 0)
                {
                    nr = v - tv + chg;
                }
            }
            let nr2 = nout - tv - chg;
            if nr2 >= 0 {
                nr = nr.min(nr2);
            }
            self.rad[i] = nr.max(0) as u8;
        }
    }

    /// RDKit's countAtomElec: electrons an atom can give to a pi system (-1: none).
    fn count_elec(&self, i: usize) -> i32 {
        let z = self.z[i];
        let dv = valences(z)[0] as i32;
        if dv <= 1 {
            return -1;
        }
        let degree = self.degree(i) + self.total_h(i);
        if degree > 3 {
            return -1;
        }
        let nlp = (n_outer(z) - dv - self.charge[i] as i32).max(0);
        let mut res = (dv - degree) + nlp - self.rad[i] as i32;
        if res > 1 && self.ev(i) - self.degree(i) > 1 {
            res = 1;
        }
        res
    }

    fn noncyclic_multiple(&self, i: usize) -> Option<usize> {
        self.adj[i].iter().find(|&&(_, k)| !self.ring_bond[k] && self.order[k] >= 2).map(|&(j, _)| j)
    }
    fn cyclic_multiple(&self, i: usize) -> bool {
        self.adj[i].iter().any(|&(_, k)| self.ring_bond[k] && self.order[k] >= 2)
    }
    fn any_multiple(&self, i: usize) -> bool {
        self.adj[i].iter().any(|&(_, k)| self.order[k] >= 2)
    }

    /// Electron donor type: 0 vacant, 1 one, 2 two, -1 none.
    fn donor(&self, i: usize) -> i32 {
        let nelec = self.count_elec(i);
        if nelec < 0 {
            -1
        } else if nelec == 0 {
            if self.noncyclic_multiple(i).is_some() {
                0
            } else if self.cyclic_multiple(i) {
                1
            } else {
                -1
            }
        } else if nelec == 1 {
            if let Some(j) = self.noncyclic_multiple(i) {
                if more_en(self.z[j], self.z[i]) { 0 } else { 1 }
            } else if self.any_multiple(i) {
                1
            } else if self.charge[i] == 1 {
                0
            } else {
                -1
            }
        } else {
            let mut ne = nelec;
            if let Some(j) = self.noncyclic_multiple(i)
                && more_en(self.z[j], self.z[i])
            {
                ne -= 1;
            }
            if ne % 2 == 1 { 1 } else { 2 }
        }
    }

    fn arom_candidate(&self, i: usize, donor: i32) -> bool {
        let z = self.z[i];
        if (z > 18 && z != 34 && z != 52) || z == 0 || donor < 0 {
            return false;
        }
        let dv = valences(z)[0] as i32;
        let tv = self.ev(i) + self.himp[i] as i32;
        if dv > 0 && tv > default_valence(z as i32 - self.charge[i] as i32) {
            return false;
        }
        if self.ev(i) - self.degree(i) > 1 {
            let nmult = self.adj[i].iter().filter(|&&(_, k)| self.order[k] >= 2).count();
            if nmult > 1 {
                return false;
            }
        }
        true
    }

    fn aromaticity(&mut self) {
        let n = self.z.len();
        let nb = self.bonds.len();
        self.arom_bond = vec![false; nb];
        let rings = sssr(n, &self.bonds, &self.adj, &self.ring_bond);
        if rings.is_empty() {
            return;
        }
        let donor: Vec<i32> = (0..n).map(|i| self.donor(i)).collect();
        let cand: Vec<bool> = (0..n).map(|i| self.arom_candidate(i, donor[i])).collect();
        let crings: Vec<&Ring> = rings.iter().filter(|r| r.atoms.iter().all(|&a| cand[a])).collect();
        // fused systems: rings sharing a bond
        let nr = crings.len();
        let shares = |a: &Ring, b: &Ring| a.bonds.iter().any(|k| b.bonds.contains(k));
        let mut sys = vec![usize::MAX; nr];
        let mut nsys = 0;
        for s in 0..nr {
            if sys[s] != usize::MAX {
                continue;
            }
            sys[s] = nsys;
            let mut stack = vec![s];
            while let Some(r) = stack.pop() {
                for t in 0..nr {
                    if sys[t] == usize::MAX && shares(crings[r], crings[t]) {
                        sys[t] = nsys;
                        stack.push(t);
                    }
                }
            }
            nsys += 1;
        }
        let electrons = |atoms: &[usize]| -> bool {
            let e: i32 = atoms.iter().map(|&a| donor[a].max(0)).sum();
            if e >= 6 { (e - 2) % 4 == 0 } else { e == 2 }
        };
        for s in 0..nsys {
            let members: Vec<&Ring> = (0..nr).filter(|&r| sys[r] == s).map(|r| crings[r]).collect();
            let mut sys_bonds: Vec<usize> = members.iter().flat_map(|r| r.bonds.iter().copied()).collect();
            sys_bonds.sort_unstable();
            sys_bonds.dedup();
            let k = members.len();
            let max_size = k.min(MAX_FUSED);
            let mut tried = 0usize;
            'sizes: for size in 1..=max_size {
                if sys_bonds.iter().all(|&b| self.arom_bond[b]) {
                    break;
                }
                let mut comb: Vec<usize> = (0..size).collect();
                loop {
                    tried += 1;
                    if tried > 20_000 {
                        break 'sizes;
                    }
                    let rs: Vec<&Ring> = comb.iter().map(|&c| members[c]).collect();
                    if connected(&rs, &shares) {
                        // perimeter atoms: ends of bonds that lie in exactly one of the rings
                        let mut ats: Vec<usize> = Vec::new();
                        if size == 1 {
                            ats = rs[0].atoms.clone();
                        } else {
                            for r in &rs {
                                for &b in &r.bonds {
                                    if rs.iter().filter(|q| q.bonds.contains(&b)).count() == 1 {
                                        ats.push(self.bonds[b].0);
                                        ats.push(self.bonds[b].1);
                                    }
                                }
                            }
                            ats.sort_unstable();
                            ats.dedup();
                        }
                        if electrons(&ats) {
                            for r in &rs {
                                for &a in &r.atoms {
                                    self.arom[a] = true;
                                }
                                for &b in &r.bonds {
                                    self.arom_bond[b] = true;
                                }
                            }
                        }
                    }
                    if !next_comb(&mut comb, k) {
                        break;
                    }
                }
            }
        }
    }

    /// RDKit's setConjugation.
    fn conjugation(&mut self) {
        let n = self.z.len();
        self.conj = self.arom_bond.clone();
        let conj_cand = |i: usize| -> bool {
            let z = self.z[i];
            let no = n_outer(z);
            (z <= 10 || (no != 5 && no != 6) || (no == 6 && self.degree(i) + self.total_h(i) < 2)) && self.count_elec(i) > 0
        };
        let cands: Vec<bool> = (0..n).map(conj_cand).collect();
        for i in 0..n {
            if !cands[i] {
                continue;
            }
            let sbo = self.degree(i) + self.total_h(i);
            if !(2..=3).contains(&sbo) {
                continue;
            }
            for &(_, k1) in &self.adj[i] {
                if !(self.arom_bond[k1] || self.order[k1] >= 2) {
                    continue;
                }
                for &(j, k2) in &self.adj[i] {
                    if k1 == k2 {
                        continue;
                    }
                    if self.degree(j) + self.total_h(j) > 3 {
                        continue;
                    }
                    if cands[j] {
                        self.conj[k1] = true;
                        self.conj[k2] = true;
                    }
                }
            }
        }
    }

    fn hybridization(&mut self) {
        let n = self.z.len();
        self.hyb = (0..n)
            .map(|i| {
                let z = self.z[i];
                if z == 0 {
                    return Hyb::Unspecified;
                }
                let deg = self.degree(i) + self.total_h(i);
                let norbs = if z >= 89 || z <= 1 {
                    deg
                } else {
                    let nout = n_outer(z);
                    let tv = self.ev(i) + self.himp[i] as i32;
                    let chg = self.charge[i] as i32;
                    let free = nout - (tv + chg);
                    let rad = self.rad[i] as i32;
                    if tv + nout - chg < 8 { deg + (free - rad) / 2 + rad } else { deg + free / 2 }
                };
                match norbs {
                    0 | 1 => Hyb::S,
                    2 => Hyb::Sp,
                    3 => Hyb::Sp2,
                    4 => {
                        if deg < 4 && self.adj[i].iter().any(|&(_, k)| self.conj[k]) {
                            Hyb::Sp2
                        } else {
                            Hyb::Sp3
                        }
                    }
                    5 => Hyb::Sp3d,
                    6 => Hyb::Sp3d2,
                    _ => Hyb::Unspecified,
                }
            })
            .collect();
    }
}

const MAX_FUSED: usize = 6;

/// Backtracking frame of the kekulization matcher.
type Frame = (usize, Vec<(usize, usize)>, usize);

fn bad_valence(z: u8, valence: i32, atom: usize) -> SmilesError {
    SmilesError::BadValence { element: symbol(z).to_string(), valence, atom }
}

fn connected(rs: &[&Ring], shares: &dyn Fn(&Ring, &Ring) -> bool) -> bool {
    let mut reach = vec![false; rs.len()];
    reach[0] = true;
    let mut stack = vec![0];
    while let Some(a) = stack.pop() {
        for b in 0..rs.len() {
            if !reach[b] && shares(rs[a], rs[b]) {
                reach[b] = true;
                stack.push(b);
            }
        }
    }
    reach.iter().all(|&x| x)
}

fn next_comb(c: &mut [usize], n: usize) -> bool {
    let k = c.len();
    let mut i = k;
    while i > 0 {
        i -= 1;
        if c[i] < n - k + i {
            c[i] += 1;
            for j in i + 1..k {
                c[j] = c[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// Bonds on a cycle (not bridges), by an iterative DFS with low-links.
pub(crate) fn ring_bonds(n: usize, adj: &[Vec<(usize, usize)>]) -> Vec<bool> {
    let nb = adj.iter().map(|a| a.len()).sum::<usize>() / 2;
    let mut ring = vec![true; nb];
    let mut disc = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut t = 0;
    for s in 0..n {
        if disc[s] != usize::MAX {
            continue;
        }
        // (node, parent bond, next adj index)
        let mut stack: Vec<(usize, usize, usize)> = vec![(s, usize::MAX, 0)];
        disc[s] = t;
        low[s] = t;
        t += 1;
        while let Some(&mut (u, pb, ref mut it)) = stack.last_mut() {
            if *it < adj[u].len() {
                let (v, k) = adj[u][*it];
                *it += 1;
                if k == pb {
                    continue;
                }
                if disc[v] == usize::MAX {
                    disc[v] = t;
                    low[v] = t;
                    t += 1;
                    stack.push((v, k, 0));
                } else {
                    low[u] = low[u].min(disc[v]);
                }
            } else {
                stack.pop();
                if let Some(&(p, _, _)) = stack.last() {
                    low[p] = low[p].min(low[u]);
                    if low[u] > disc[p] {
                        ring[pb] = false;
                    }
                }
            }
        }
    }
    ring
}

#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub atoms: Vec<usize>,
    pub bonds: Vec<usize>,
}

/// Smallest set of smallest rings: shortest cycle through each ring bond, then a GF(2)-independent
/// subset by increasing size (a minimum cycle basis).
pub(crate) fn sssr(n: usize, bonds: &[(usize, usize)], adj: &[Vec<(usize, usize)>], ring_bond: &[bool]) -> Vec<Ring> {
    let nb = bonds.len();
    let ring_atoms: Vec<bool> = (0..n).map(|i| adj[i].iter().any(|&(_, k)| ring_bond[k])).collect();
    let nrb = ring_bond.iter().filter(|&&r| r).count();
    if nrb == 0 {
        return Vec::new();
    }
    // number of independent cycles = E - V + C on the ring subgraph
    let nra = ring_atoms.iter().filter(|&&r| r).count();
    let mut comp = 0;
    let mut seen = vec![false; n];
    for s in 0..n {
        if ring_atoms[s] && !seen[s] {
            comp += 1;
            seen[s] = true;
            let mut st = vec![s];
            while let Some(u) = st.pop() {
                for &(v, k) in &adj[u] {
                    if ring_bond[k] && !seen[v] {
                        seen[v] = true;
                        st.push(v);
                    }
                }
            }
        }
    }
    let need = nrb + comp - nra;
    let mut cands: Vec<Vec<usize>> = Vec::new(); // bond lists
    for k in 0..nb {
        if ring_bond[k]
            && let Some(c) = shortest_cycle(n, bonds, adj, ring_bond, k)
        {
            cands.push(c);
        }
    }
    let words = nb.div_ceil(64);
    let to_bits = |c: &[usize]| {
        let mut v = vec![0u64; words];
        for &k in c {
            v[k / 64] |= 1 << (k % 64);
        }
        v
    };
    let mut chosen: Vec<Vec<usize>> = Vec::new();
    let mut basis: Vec<(usize, Vec<u64>)> = Vec::new(); // (pivot bit, row)
    let mut try_add = |c: Vec<usize>, chosen: &mut Vec<Vec<usize>>| {
        let mut row = to_bits(&c);
        for (p, b) in &basis {
            if row[p / 64] >> (p % 64) & 1 == 1 {
                for w in 0..words {
                    row[w] ^= b[w];
                }
            }
        }
        if let Some(p) = (0..nb).find(|&p| row[p / 64] >> (p % 64) & 1 == 1) {
            basis.push((p, row));
            chosen.push(c);
        }
    };
    cands.sort_by_key(|c| c.len());
    cands.dedup();
    for c in cands {
        if chosen.len() >= need {
            break;
        }
        try_add(c, &mut chosen);
    }
    if chosen.len() < need {
        // Horton candidates as a fallback
        let mut more = horton(n, bonds, adj, ring_bond, &ring_atoms);
        more.sort_by_key(|c| c.len());
        for c in more {
            if chosen.len() >= need {
                break;
            }
            try_add(c, &mut chosen);
        }
    }
    chosen
        .into_iter()
        .map(|bl| {
            let mut atoms: Vec<usize> = bl.iter().flat_map(|&k| [bonds[k].0, bonds[k].1]).collect();
            atoms.sort_unstable();
            atoms.dedup();
            let mut bl = bl;
            bl.sort_unstable();
            Ring { atoms, bonds: bl }
        })
        .collect()
}

/// Shortest cycle through bond `k0` (BFS between its ends without using it), as sorted bond list.
fn shortest_cycle(n: usize, bonds: &[(usize, usize)], adj: &[Vec<(usize, usize)>], ring_bond: &[bool], k0: usize) -> Option<Vec<usize>> {
    let (s, t) = bonds[k0];
    let mut prev = vec![usize::MAX; n]; // bond used to reach
    let mut seen = vec![false; n];
    seen[s] = true;
    let mut q = VecDeque::from([s]);
    while let Some(u) = q.pop_front() {
        if u == t {
            break;
        }
        for &(v, k) in &adj[u] {
            if k != k0 && ring_bond[k] && !seen[v] {
                seen[v] = true;
                prev[v] = k;
                q.push_back(v);
            }
        }
    }
    if !seen[t] {
        return None;
    }
    let mut path = vec![k0];
    let mut u = t;
    while u != s {
        let k = prev[u];
        path.push(k);
        u = if bonds[k].0 == u { bonds[k].1 } else { bonds[k].0 };
    }
    path.sort_unstable();
    Some(path)
}

fn horton(n: usize, bonds: &[(usize, usize)], adj: &[Vec<(usize, usize)>], ring_bond: &[bool], ring_atoms: &[bool]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for r in 0..n {
        if !ring_atoms[r] {
            continue;
        }
        let mut prev = vec![usize::MAX; n];
        let mut dist = vec![usize::MAX; n];
        dist[r] = 0;
        let mut q = VecDeque::from([r]);
        while let Some(u) = q.pop_front() {
            for &(v, k) in &adj[u] {
                if ring_bond[k] && dist[v] == usize::MAX {
                    dist[v] = dist[u] + 1;
                    prev[v] = k;
                    q.push_back(v);
                }
            }
        }
        let path = |mut u: usize| {
            let mut p = Vec::new();
            while u != r {
                let k = prev[u];
                p.push(k);
                u = if bonds[k].0 == u { bonds[k].1 } else { bonds[k].0 };
            }
            p
        };
        for (k, &(x, y)) in bonds.iter().enumerate() {
            if !ring_bond[k] || dist[x] == usize::MAX || dist[y] == usize::MAX || prev[x] == k || prev[y] == k {
                continue;
            }
            let (px, py) = (path(x), path(y));
            if px.iter().any(|b| py.contains(b)) {
                continue;
            }
            let mut c: Vec<usize> = px.into_iter().chain(py).chain([k]).collect();
            c.sort_unstable();
            c.dedup();
            out.push(c);
        }
        if out.len() > 50_000 {
            break;
        }
    }
    out
}
