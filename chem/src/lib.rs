//! SMILES → molecular graph with DeepChem `ConvMolFeaturizer` atom features (75 per atom), in pure
//! Rust (builds for wasm32). Chemistry follows RDKit's `MolFromSmiles` (default sanitization):
//! implicit Hs from default valences, kekulization of aromatic input, aromaticity re-perceived with
//! RDKit's default model (Kekulé input such as `C1=CC=CC=C1` becomes aromatic), conjugation and
//! hybridization as RDKit assigns them. Atom order is the SMILES order; plain `[H]` atoms are folded
//! into their neighbour like RDKit's `RemoveHs` (isotopic, charged or bare H stay atoms).
//! Agreement with RDKit on Tox21: `docs/results/featurizer.txt`.
#![warn(missing_docs)]

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
    "C", "N", "O", "S", "F", "Si", "P", "Cl", "Br", "Mg", "Na", "Ca", "Fe", "As", "Al", "I", "B", "V", "K", "Tl", "Yb", "Sb", "Sn", "Ag",
    "Pd", "Co", "Se", "Ti", "Zn", "H", "Li", "Ge", "Cu", "Au", "Ni", "Cd", "In", "Mn", "Zr", "Cr", "Pt", "Hg", "Pb", "Unknown",
];

/// Offsets of the feature groups inside one atom's 75 values.
pub mod layout {
    /// Element one-hot over [`ELEMENTS`](super::ELEMENTS).
    pub const ELEMENT: usize = 0; // 44
    /// Degree one-hot (number of bonded atoms in the graph).
    pub const DEGREE: usize = 44; // 11: 0..=10
    /// Total hydrogen count one-hot.
    pub const TOTAL_H: usize = 55; // 5: 0..=4 (more -> last)
    /// Implicit valence (implicit H count) one-hot.
    pub const IMPLICIT_VALENCE: usize = 60; // 7: 0..=6 (more -> last)
    /// Formal charge, as a signed value.
    pub const FORMAL_CHARGE: usize = 67;
    /// Number of radical electrons.
    pub const RADICALS: usize = 68;
    /// Hybridization one-hot.
    pub const HYBRIDIZATION: usize = 69; // 5: SP, SP2, SP3, SP3D, SP3D2 (other -> last)
    /// 1 for an aromatic atom, else 0.
    pub const AROMATIC: usize = 74;
}

/// A featurized molecule: atom features, bonds and element symbols, atoms in SMILES order.
#[derive(Debug, Clone, PartialEq)]
pub struct MolGraph {
    /// Number of atoms (heavy atoms and kept H atoms).
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
    /// The SMILES is empty, blank or has no atoms.
    #[error("empty SMILES")]
    Empty,
    /// Longer than [`MAX_SMILES_LEN`]: refused before parsing (memory and time stay bounded).
    #[error("SMILES of {len} characters is over the limit of {MAX_SMILES_LEN} (bioedge_chem::MAX_SMILES_LEN)")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character that cannot start an atom, bond or ring closure here.
    #[error("unexpected character `{ch}` at position {pos}")]
    UnexpectedChar {
        /// The character.
        ch: char,
        /// Its position.
        pos: usize,
    },
    /// An element symbol that is not known (or not allowed outside brackets).
    #[error("unknown element `{symbol}` at position {pos}")]
    UnknownElement {
        /// The symbol as written.
        symbol: String,
        /// Its position.
        pos: usize,
    },
    /// A ring-closure number that is opened but never closed.
    #[error("unclosed ring {ring} at position {pos}")]
    UnclosedRing {
        /// The ring-closure number.
        ring: u32,
        /// Position where the ring was opened.
        pos: usize,
    },
    /// A branch `(` without its `)`.
    #[error("unclosed '(' at position {pos}")]
    UnclosedParen {
        /// Position of the `(`.
        pos: usize,
    },
    /// A `)` without an open branch.
    #[error("unmatched ')' at position {pos}")]
    UnmatchedParen {
        /// Position of the `)`.
        pos: usize,
    },
    /// A bracket atom `[` without its `]`.
    #[error("unclosed '[' at position {pos}")]
    UnclosedBracket {
        /// Position of the `[`.
        pos: usize,
    },
    /// A bracket atom with invalid content.
    #[error("bad bracket atom at position {pos}: {what}")]
    BadBracket {
        /// What is wrong.
        what: &'static str,
        /// Position of the bracket atom.
        pos: usize,
    },
    /// A bond or ring-closure bond that cannot be placed.
    #[error("bad bond at position {pos}: {what}")]
    BadBond {
        /// What is wrong.
        what: &'static str,
        /// Position of the bond.
        pos: usize,
    },
    /// An atom whose valence is not allowed for its element and charge.
    #[error("bad valence: {element} with {valence} bonds at atom {atom}")]
    BadValence {
        /// Element symbol.
        element: String,
        /// The atom's explicit valence (bond orders plus explicit Hs).
        valence: i32,
        /// Atom index.
        atom: usize,
    },
    /// An aromatic atom that is not in a ring.
    #[error("non-ring atom {element} marked aromatic at atom {atom}")]
    AromaticNotInRing {
        /// Element symbol.
        element: String,
        /// Atom index.
        atom: usize,
    },
    /// An aromatic system with no valid alternation of single and double bonds.
    #[error("cannot kekulize aromatic system at atom {atom}")]
    Kekulize {
        /// Index of an atom of the system.
        atom: usize,
    },
}

/// Longest SMILES accepted, in bytes: 100,000 characters hold a 50,000-atom chain (tested; the
/// longest SMILES in Tox21 has 342 characters) in about 140 MB; a 1,000,000-atom string took
/// 2.8 GB and then panicked.
pub const MAX_SMILES_LEN: usize = 100_000;

/// Parse one SMILES and compute the 75 DeepChem atom features per atom.
pub fn featurize(smiles: &str) -> Result<MolGraph, SmilesError> {
    if smiles.len() > MAX_SMILES_LEN {
        return Err(SmilesError::TooLong { len: smiles.len() });
    }
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
        let sym = if m.z[i] == 0 { "*" } else { elements::SYMBOLS[m.z[i] as usize - 1] };
        elements.push(sym.to_string());
        let e = ELEMENTS.iter().position(|s| *s == sym).unwrap_or(ELEMENTS.len() - 1);
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
    let bond_orders = (0..m.bonds.len()).map(|k| if m.arom_bond[k] { 4 } else { m.order[k].min(3) }).collect();
    MolGraph { num_atoms: n, features: f, bonds, elements, bond_orders }
}
