//! SMILES → molecular graph with DeepChem `ConvMolFeaturizer` atom features (75 per atom), in pure
//! Rust (builds for wasm32). Chemistry follows RDKit's `MolFromSmiles` (default sanitization):
//! implicit Hs from default valences, kekulization of aromatic input, aromaticity re-perceived with
//! RDKit's default model (Kekulé input such as `C1=CC=CC=C1` becomes aromatic), conjugation and
//! hybridization as RDKit assigns them. Atom order is the SMILES order; plain `[H]` atoms are folded
//! into their neighbour like RDKit's `RemoveHs` (isotopic, charged or bare H stay atoms).
//! Agreement with RDKit on Tox21: `docs/results/featurizer.txt`.

mod elements;
mod mol;
mod parse;
mod scaffold;
#[cfg(test)]
mod tests;

use mol::{Hyb, Mol};

/// Features per atom.
pub const ATOM_FEATURES: usize = 75;

/// Element one-hot vocabulary (DeepChem's list; anything else maps to `Unknown`).
pub const ELEMENTS: [&str; 44] = [
    "C", "N", "O", "S", "F", "Si", "P", "Cl", "Br", "Mg", "Na", "Ca", "Fe", "As", "Al", "I", "B",
    "V", "K", "Tl", "Yb", "Sb", "Sn", "Ag", "Pd", "Co", "Se", "Ti", "Zn", "H", "Li", "Ge", "Cu",
    "Au", "Ni", "Cd", "In", "Mn", "Zr", "Cr", "Pt", "Hg", "Pb", "Unknown",
];

/// Offsets of the feature groups inside one atom's 75 values.
pub mod layout {
    pub const ELEMENT: usize = 0; // 44
    pub const DEGREE: usize = 44; // 11: 0..=10
    pub const TOTAL_H: usize = 55; // 5: 0..=4 (more -> last)
    pub const IMPLICIT_VALENCE: usize = 60; // 7: 0..=6 (more -> last)
    pub const FORMAL_CHARGE: usize = 67;
    pub const RADICALS: usize = 68;
    pub const HYBRIDIZATION: usize = 69; // 5: SP, SP2, SP3, SP3D, SP3D2 (other -> last)
    pub const AROMATIC: usize = 74;
}

#[derive(Debug, Clone, PartialEq)]
pub struct MolGraph {
    pub num_atoms: usize,
    /// `num_atoms * 75`, row-major.
    pub features: Vec<f32>,
    /// Each bond once, `(i, j)` with `i < j`, heavy atoms (and kept H atoms) only.
    pub bonds: Vec<(u32, u32)>,
    /// Element symbol per atom (`*` for a wildcard).
    pub elements: Vec<String>,
    /// Per bond: 1, 2, 3, or 4 = aromatic (a quadruple bond is reported as 3).
    pub bond_orders: Vec<u8>,
}

/// Why a SMILES was rejected. Positions are 0-based character offsets; atoms are 0-based indices in
/// SMILES order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SmilesError {
    #[error("empty SMILES")]
    Empty,
    #[error("unexpected character `{ch}` at position {pos}")]
    UnexpectedChar { ch: char, pos: usize },
    #[error("unknown element `{symbol}` at position {pos}")]
    UnknownElement { symbol: String, pos: usize },
    #[error("unclosed ring {ring} at position {pos}")]
    UnclosedRing { ring: u32, pos: usize },
    #[error("unclosed '(' at position {pos}")]
    UnclosedParen { pos: usize },
    #[error("unmatched ')' at position {pos}")]
    UnmatchedParen { pos: usize },
    #[error("unclosed '[' at position {pos}")]
    UnclosedBracket { pos: usize },
    #[error("bad bracket atom at position {pos}: {what}")]
    BadBracket { what: &'static str, pos: usize },
    #[error("bad bond at position {pos}: {what}")]
    BadBond { what: &'static str, pos: usize },
    #[error("bad valence: {element} with {valence} bonds at atom {atom}")]
    BadValence {
        element: String,
        valence: i32,
        atom: usize,
    },
    #[error("non-ring atom {element} marked aromatic at atom {atom}")]
    AromaticNotInRing { element: String, atom: usize },
    #[error("cannot kekulize aromatic system at atom {atom}")]
    Kekulize { atom: usize },
}

/// Parse one SMILES and compute the 75 DeepChem atom features per atom.
pub fn featurize(smiles: &str) -> Result<MolGraph, SmilesError> {
    let (atoms, bonds) = parse::parse(smiles)?;
    let mol = Mol::build(atoms, bonds)?;
    Ok(graph(&mol))
}

/// Batch: featurize each, keeping per-row errors.
pub fn featurize_all<S: AsRef<str>>(smiles: &[S]) -> Vec<Result<MolGraph, SmilesError>> {
    smiles.iter().map(|s| featurize(s.as_ref())).collect()
}

/// Bemis–Murcko scaffold key: ring systems + linkers (side chains removed, exocyclic double-bonded
/// atoms kept as RDKit's MurckoScaffold does), as an atom-order independent Weisfeiler–Lehman hash;
/// `""` for acyclic molecules.
pub fn scaffold_key(mol: &MolGraph) -> String {
    scaffold::key(mol)
}

fn graph(m: &Mol) -> MolGraph {
    let n = m.z.len();
    let mut f = vec![0f32; n * ATOM_FEATURES];
    let mut elements = Vec::with_capacity(n);
    for i in 0..n {
        let row = &mut f[i * ATOM_FEATURES..(i + 1) * ATOM_FEATURES];
        let sym = if m.z[i] == 0 {
            "*"
        } else {
            elements::SYMBOLS[m.z[i] as usize - 1]
        };
        elements.push(sym.to_string());
        let e = ELEMENTS
            .iter()
            .position(|s| *s == sym)
            .unwrap_or(ELEMENTS.len() - 1);
        row[layout::ELEMENT + e] = 1.0;
        row[layout::DEGREE + (m.degree(i) as usize).min(10)] = 1.0;
        row[layout::TOTAL_H + (m.total_h(i) as usize).min(4)] = 1.0;
        row[layout::IMPLICIT_VALENCE + (m.himp[i] as usize).min(6)] = 1.0;
        row[layout::FORMAL_CHARGE] = m.charge[i] as f32;
        row[layout::RADICALS] = m.rad[i] as f32;
        let h = match m.hyb[i] {
            Hyb::Sp => 0,
            Hyb::Sp2 => 1,
            Hyb::Sp3 => 2,
            Hyb::Sp3d => 3,
            Hyb::Sp3d2 | Hyb::S | Hyb::Unspecified => 4, // DeepChem's one_of_k_encoding_unk
        };
        row[layout::HYBRIDIZATION + h] = 1.0;
        row[layout::AROMATIC] = if m.arom[i] { 1.0 } else { 0.0 };
    }
    let bonds = m.bonds.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
    let bond_orders = (0..m.bonds.len())
        .map(|k| if m.arom_bond[k] { 4 } else { m.order[k].min(3) })
        .collect();
    MolGraph {
        num_atoms: n,
        features: f,
        bonds,
        elements,
        bond_orders,
    }
}
