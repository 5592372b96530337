#!/usr/bin/env python3
"""Reference atom features for the Rust featurizer (infer/src/chem): DeepChem ConvMolFeaturizer's
75 atom features computed with RDKit, one JSON line per input SMILES.

usage: rdkit_features.py [--kekule-random] [CSV] [OUT.jsonl]
  --kekule-random: instead of each SMILES as written, use RDKit's Kekulé SMILES of the molecule in a
  random atom order (seeded), to exercise aromaticity perception and other spellings.
  CSV defaults to /work/shared/data/tox21/tox21.csv (column `smiles`);
  OUT defaults to $HOME/.cache/bioedge/tox21_rdkit_features.jsonl.
Each line: {"i": row, "smiles": s, "ok": bool, "atoms": [[[idx, value], ...] per atom], "bonds": [[i, j], ...]}
where an atom lists the non-zero entries of its 75-vector (sparse).
"""
import csv
import json
import os
import sys

from rdkit import Chem, RDLogger, rdBase

RDLogger.DisableLog("rdApp.*")
rdBase.SeedRandomNumberGenerator(42)

ELEMENTS = ['C', 'N', 'O', 'S', 'F', 'Si', 'P', 'Cl', 'Br', 'Mg', 'Na', 'Ca', 'Fe', 'As', 'Al', 'I',
            'B', 'V', 'K', 'Tl', 'Yb', 'Sb', 'Sn', 'Ag', 'Pd', 'Co', 'Se', 'Ti', 'Zn', 'H', 'Li', 'Ge',
            'Cu', 'Au', 'Ni', 'Cd', 'In', 'Mn', 'Zr', 'Cr', 'Pt', 'Hg', 'Pb', 'Unknown']
HYB = [Chem.rdchem.HybridizationType.SP, Chem.rdchem.HybridizationType.SP2,
       Chem.rdchem.HybridizationType.SP3, Chem.rdchem.HybridizationType.SP3D,
       Chem.rdchem.HybridizationType.SP3D2]


def one_of_k(x, allowed, unk):
    if x not in allowed:
        if not unk:
            raise ValueError(f"{x} not in {allowed}")
        x = allowed[-1]
    return [float(x == a) for a in allowed]


def atom_features(a):
    """DeepChem graph_features.atom_features with default arguments (75 values)."""
    return (one_of_k(a.GetSymbol(), ELEMENTS, True)
            + one_of_k(a.GetDegree(), list(range(11)), False)
            + one_of_k(a.GetTotalNumHs(), [0, 1, 2, 3, 4], True)
            + one_of_k(a.GetImplicitValence(), [0, 1, 2, 3, 4, 5, 6], True)
            + [float(a.GetFormalCharge()), float(a.GetNumRadicalElectrons())]
            + one_of_k(a.GetHybridization(), HYB, True)
            + [float(a.GetIsAromatic())])


def main():
    args = [a for a in sys.argv[1:] if a != "--kekule-random"]
    kekule = len(args) != len(sys.argv) - 1
    src = args[0] if len(args) > 0 else "/work/shared/data/tox21/tox21.csv"
    dst = args[1] if len(args) > 1 else os.path.expanduser(
        "~/.cache/bioedge/tox21_rdkit_features.jsonl")
    n_ok = 0
    with open(src, newline="") as f, open(dst + ".tmp", "w") as out:
        for i, row in enumerate(csv.DictReader(f)):
            smi = row["smiles"]
            if kekule:
                m0 = Chem.MolFromSmiles(smi)
                if m0 is None:
                    continue
                Chem.Kekulize(m0, clearAromaticFlags=True)
                smi = Chem.MolToSmiles(m0, kekuleSmiles=True, doRandom=True, canonical=False)
            mol = Chem.MolFromSmiles(smi)
            rec = {"i": i, "smiles": smi, "ok": mol is not None, "atoms": [], "bonds": []}
            if mol is not None:
                n_ok += 1
                for a in mol.GetAtoms():
                    v = atom_features(a)
                    assert len(v) == 75
                    rec["atoms"].append([[k, x] for k, x in enumerate(v) if x != 0.0])
                rec["bonds"] = sorted(sorted([b.GetBeginAtomIdx(), b.GetEndAtomIdx()])
                                      for b in mol.GetBonds())
            out.write(json.dumps(rec, separators=(",", ":")) + "\n")
    os.replace(dst + ".tmp", dst)
    import rdkit
    print(f"rdkit {rdkit.__version__}: {i + 1} SMILES, {n_ok} parsed -> {dst}")


if __name__ == "__main__":
    main()
