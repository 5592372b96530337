//! OpenSMILES reader: atoms and bonds as written, no chemistry yet.

use std::collections::{HashMap, HashSet};

use super::SmilesError;
use super::elements::SYMBOLS;

/// Bond orders while parsing; `ARO` is ':' or an unmarked bond between two aromatic atoms.
pub(crate) const ARO: u8 = 5;
const UNSPEC: u8 = 0;

#[derive(Debug, Clone)]
pub(crate) struct RawAtom {
    pub z: u8, // 0 = '*'
    pub arom: bool,
    pub bracket: bool,
    pub h: u8, // explicit H count (brackets)
    pub charge: i8,
    pub isotope: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct RawBond {
    pub a: usize,
    pub b: usize,
    pub order: u8, // 1, 2, 3, 4 (quadruple), ARO
    pub dir: bool, // '/' or '\'
}

pub(crate) fn element_z(sym: &str) -> Option<u8> {
    SYMBOLS.iter().position(|s| *s == sym).map(|i| i as u8 + 1)
}

struct P<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    /// Character (not byte) position of byte offset `b`.
    fn cpos(&self, b: usize) -> usize {
        let b = b.min(self.src.len());
        self.src.char_indices().take_while(|(k, _)| *k < b).count()
    }
    fn unexpected(&self, b: usize) -> SmilesError {
        let ch = self.src.get(b..).and_then(|t| t.chars().next()).unwrap_or('?');
        SmilesError::UnexpectedChar { ch, pos: self.cpos(b) }
    }
    fn number(&mut self, max_digits: usize) -> Option<u32> {
        let start = self.i;
        let mut v: u32 = 0;
        while let Some(c) = self.peek() {
            if !c.is_ascii_digit() || self.i - start >= max_digits {
                break;
            }
            v = v * 10 + (c - b'0') as u32;
            self.i += 1;
        }
        (self.i > start).then_some(v)
    }
}

/// An open ring bond: atom, bond written at the opening (order, directional), byte position.
type RingOpen = (usize, Option<(u8, bool)>, usize);

pub(crate) fn parse(src: &str) -> Result<(Vec<RawAtom>, Vec<RawBond>), SmilesError> {
    let src_trim = src.trim_end_matches(['\n', '\r']);
    if src_trim.trim().is_empty() {
        return Err(SmilesError::Empty);
    }
    let mut p = P { s: src_trim.as_bytes(), src: src_trim, i: 0 };
    let mut atoms: Vec<RawAtom> = Vec::new();
    let mut bonds: Vec<RawBond> = Vec::new();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut prev: Option<usize> = None;
    let mut pending: Option<(u8, bool, usize)> = None; // order, directional, byte pos
    let mut stack: Vec<(Option<usize>, usize)> = Vec::new();
    let mut rings: HashMap<u32, RingOpen> = HashMap::new();

    let mut add_bond = |a: usize, b: usize, order: u8, dir: bool, pos: usize, bonds: &mut Vec<RawBond>, p: &P| {
        let key = (a.min(b), a.max(b));
        if a == b || !seen.insert(key) {
            return Err(SmilesError::BadBond { what: "duplicate bond or ring closure to itself", pos: p.cpos(pos) });
        }
        bonds.push(RawBond { a, b, order, dir });
        Ok(())
    };

    while let Some(c) = p.peek() {
        let at = p.i;
        match c {
            b'-' | b'=' | b'#' | b'$' | b':' | b'/' | b'\\' => {
                if pending.is_some() {
                    return Err(SmilesError::BadBond { what: "two bond symbols in a row", pos: p.cpos(at) });
                }
                let order = match c {
                    b'=' => 2,
                    b'#' => 3,
                    b'$' => 4,
                    b':' => ARO,
                    _ => 1,
                };
                pending = Some((order, c == b'/' || c == b'\\', at));
                p.i += 1;
            }
            b'(' => {
                if prev.is_none() || pending.is_some() {
                    return Err(p.unexpected(at));
                }
                stack.push((prev, at));
                p.i += 1;
            }
            b')' => {
                if pending.is_some() {
                    return Err(SmilesError::BadBond { what: "bond symbol before ')'", pos: p.cpos(at) });
                }
                match stack.pop() {
                    Some((a, _)) => prev = a,
                    None => return Err(SmilesError::UnmatchedParen { pos: p.cpos(at) }),
                }
                p.i += 1;
            }
            b'.' => {
                if pending.is_some() {
                    return Err(SmilesError::BadBond { what: "bond symbol before '.'", pos: p.cpos(at) });
                }
                prev = None;
                p.i += 1;
            }
            b'0'..=b'9' | b'%' => {
                let num = if c == b'%' {
                    p.i += 1;
                    let st = p.i;
                    match p.number(2) {
                        Some(n) if p.i - st == 2 => n,
                        _ => {
                            return Err(SmilesError::BadBond { what: "'%' needs two digits", pos: p.cpos(at) });
                        }
                    }
                } else {
                    p.i += 1;
                    (c - b'0') as u32
                };
                let Some(a) = prev else {
                    return Err(SmilesError::BadBond { what: "ring closure without an atom", pos: p.cpos(at) });
                };
                let here = pending.take().map(|(o, d, _)| (o, d));
                if let Some((b, there, _)) = rings.remove(&num) {
                    let (order, dir) = match (here, there) {
                        (Some(x), Some(y)) if x.0 != y.0 => {
                            return Err(SmilesError::BadBond { what: "conflicting ring-closure bonds", pos: p.cpos(at) });
                        }
                        (Some(x), _) | (None, Some(x)) => x,
                        (None, None) => (UNSPEC, false),
                    };
                    add_bond(b, a, order, dir, at, &mut bonds, &p)?;
                } else {
                    rings.insert(num, (a, here, at));
                }
            }
            b'[' | b'A'..=b'Z' | b'a'..=b'z' | b'*' => {
                let atom = if c == b'[' { bracket(&mut p)? } else { organic(&mut p)? };
                let idx = atoms.len();
                atoms.push(atom);
                match (prev, pending.take()) {
                    (Some(a), Some((o, d, _))) => add_bond(a, idx, o, d, at, &mut bonds, &p)?,
                    (Some(a), None) => add_bond(a, idx, UNSPEC, false, at, &mut bonds, &p)?,
                    (None, Some((_, _, bp))) => {
                        return Err(SmilesError::BadBond { what: "bond without a preceding atom", pos: p.cpos(bp) });
                    }
                    (None, None) => {}
                }
                prev = Some(idx);
            }
            _ => return Err(p.unexpected(at)),
        }
    }
    if let Some((_, _, bp)) = pending {
        return Err(SmilesError::BadBond { what: "bond at the end of the SMILES", pos: p.cpos(bp) });
    }
    if let Some((num, (_, _, pos))) = rings.iter().min_by_key(|(_, v)| v.2) {
        return Err(SmilesError::UnclosedRing { ring: *num, pos: p.cpos(*pos) });
    }
    if let Some((_, pos)) = stack.last() {
        return Err(SmilesError::UnclosedParen { pos: p.cpos(*pos) });
    }
    if atoms.is_empty() {
        return Err(SmilesError::Empty);
    }
    for b in &mut bonds {
        if b.order == UNSPEC {
            b.order = if atoms[b.a].arom && atoms[b.b].arom { ARO } else { 1 };
        }
    }
    Ok((atoms, bonds))
}

fn organic(p: &mut P) -> Result<RawAtom, SmilesError> {
    let at = p.i;
    let c = p.s[at];
    let next = p.s.get(at + 1).copied();
    let (sym, arom, len) = match (c, next) {
        (b'C', Some(b'l')) => ("Cl", false, 2),
        (b'B', Some(b'r')) => ("Br", false, 2),
        (b'B' | b'C' | b'N' | b'O' | b'P' | b'S' | b'F' | b'I', _) => (&p.src[at..at + 1], false, 1),
        (b'b' | b'c' | b'n' | b'o' | b'p' | b's', _) => (&p.src[at..at + 1], true, 1),
        (b'*', _) => ("*", false, 1),
        _ => {
            // Letters that are not in the organic subset: report the would-be element.
            let mut end = at + 1;
            if c.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()) {
                end += 1;
            }
            return Err(SmilesError::UnknownElement { symbol: p.src[at..end].to_string(), pos: p.cpos(at) });
        }
    };
    p.i += len;
    let z = if sym == "*" { 0 } else { element_z(&capitalize(sym)).unwrap_or(0) };
    Ok(RawAtom { z, arom, bracket: false, h: 0, charge: 0, isotope: 0 })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// The element symbol at `p.i` (one letter, or two when `next` is lowercase) is not known.
fn unknown_element(p: &P, next: Option<u8>) -> SmilesError {
    let end = if next.is_some_and(|x| x.is_ascii_lowercase()) { p.i + 2 } else { p.i + 1 };
    SmilesError::UnknownElement { symbol: p.src[p.i..end].to_string(), pos: p.cpos(p.i) }
}

fn bracket(p: &mut P) -> Result<RawAtom, SmilesError> {
    let open = p.i;
    p.i += 1;
    let isotope = p.number(4).unwrap_or(0) as u16;
    let sym_at = p.i;
    let (z, arom) = {
        let c = p.peek().ok_or(SmilesError::UnclosedBracket { pos: p.cpos(open) })?;
        let n = p.s.get(p.i + 1).copied();
        if c == b'*' {
            p.i += 1;
            (0, false)
        } else if c.is_ascii_uppercase() {
            let two = n.filter(|x| x.is_ascii_lowercase()).and_then(|x| {
                let s = [c, x];
                element_z(std::str::from_utf8(&s).ok()?)
            });
            if let Some(z) = two {
                p.i += 2;
                (z, false)
            } else if let Some(z) = element_z(&p.src[p.i..p.i + 1]) {
                p.i += 1;
                (z, false)
            } else {
                return Err(unknown_element(p, n));
            }
        } else if c.is_ascii_lowercase() {
            let two: Option<&str> = n.and_then(|x| match (c, x) {
                (b's', b'e') => Some("Se"),
                (b'a', b's') => Some("As"),
                (b't', b'e') => Some("Te"),
                _ => None,
            });
            if let Some(s) = two {
                p.i += 2;
                (element_z(s).unwrap_or(0), true)
            } else if matches!(c, b'b' | b'c' | b'n' | b'o' | b'p' | b's') {
                p.i += 1;
                (element_z(&capitalize(&p.src[sym_at..sym_at + 1])).unwrap_or(0), true)
            } else {
                return Err(unknown_element(p, n));
            }
        } else {
            return Err(p.unexpected(p.i));
        }
    };
    // chirality (ignored)
    if p.peek() == Some(b'@') {
        p.i += 1;
        if p.peek() == Some(b'@') {
            p.i += 1;
        } else if let (Some(a), Some(b)) = (p.peek(), p.s.get(p.i + 1).copied())
            && matches!(&[a, b], b"TH" | b"AL" | b"SP" | b"TB" | b"OH")
        {
            p.i += 2;
            p.number(2);
        }
    }
    let mut h = 0u8;
    if p.peek() == Some(b'H') {
        p.i += 1;
        h = p.number(1).unwrap_or(1) as u8;
    }
    let mut charge: i32 = 0;
    if let Some(sign @ (b'+' | b'-')) = p.peek() {
        let s = if sign == b'+' { 1 } else { -1 };
        p.i += 1;
        if let Some(n) = p.number(2) {
            charge = s * n as i32;
        } else {
            charge = s;
            while p.peek() == Some(sign) {
                charge += s;
                p.i += 1;
            }
        }
        if charge.abs() > 15 {
            return Err(SmilesError::BadBracket { what: "charge out of range", pos: p.cpos(open) });
        }
    }
    if p.peek() == Some(b':') {
        // atom class / map number (ignored)
        p.i += 1;
        if p.number(9).is_none() {
            return Err(p.unexpected(p.i));
        }
    }
    match p.peek() {
        Some(b']') => p.i += 1,
        Some(_) => return Err(p.unexpected(p.i)),
        None => return Err(SmilesError::UnclosedBracket { pos: p.cpos(open) }),
    }
    Ok(RawAtom { z, arom, bracket: true, h, charge: charge as i8, isotope })
}
