// temporary experiment (to be deleted)
use models::burn::prelude::*;
use models::gene2vec::*;
fn main() {
    let text = std::fs::read_to_string("/work/shared/data/msigdb_hallmark/h.all.v7.0.symbols.gmt").unwrap();
    let mut genes: Vec<String> = Vec::new();
    let mut sets = Vec::new();
    for l in text.lines() { let f: Vec<&str> = l.split('\t').collect(); sets.push(f[2..].iter().filter(|g| !g.is_empty()).map(|g| g.to_string()).collect::<Vec<_>>()); }
    for s in &sets { genes.extend(s.iter().cloned()); }
    genes.sort(); genes.dedup();
    let mut pairs: Vec<(u32,u32)> = sets.iter().enumerate().flat_map(|(i,s)| s.iter().map(move |g| (g.clone(), i))).map(|(g,i)| (genes.binary_search(&g).unwrap() as u32, i as u32)).collect();
    pairs.sort(); pairs.dedup();
    let args: Vec<String> = std::env::args().collect();
    let (dim, epochs, lr, wd, bs): (usize, usize, f64, f64, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap(), args[3].parse().unwrap(), args[4].parse().unwrap(), args[5].parse().unwrap());
    let sp = holdout(&pairs, 50, 0.1, 10, 0);
    let n = genes.len();
    let t = std::time::Instant::now();
    let mut log = Vec::new();
    let m = Gene2Vec::fit(n, 50, &sp.train, &sp.masked(), Gene2VecConfig { dim, epochs, lr, weight_decay: wd, batch_size: bs, seed: 0 }, &Device::flex(), &mut |e, l| log.push((e, l))).unwrap();
    let all: Vec<u32> = (0..n as u32).collect();
    let e = evaluate(&m.embeddings(), dim, &m.predict(&all), 50, &sp, 0);
    {
        let mut t = m.embeddings();
        let mut mu = vec![0f32; dim];
        for r in t.chunks(dim) { for i in 0..dim { mu[i] += r[i] / n as f32; } }
        for r in t.chunks_mut(dim) { for i in 0..dim { r[i] -= mu[i]; } }
        let ec = evaluate(&t, dim, &m.predict(&all), 50, &sp, 0);
        println!("centered: held ratio {:.3} auc {:.3} (mean {:.4} vs {:.4}) | train ratio {:.3} auc {:.3}", ec.held_out.ratio, ec.held_out.auc, ec.held_out.member_mean_cosine, ec.held_out.random_mean_cosine, ec.training.ratio, ec.training.auc);
        let x = normalize_rows(&t, dim);
        let cos = |a: usize, b: usize| -> f64 { (0..dim).map(|i| (x[a*dim+i]*x[b*dim+i]) as f64).sum() };
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut tm = vec![Vec::new(); 50];
        for &(g, s) in &sp.train { tm[s as usize].push(g as usize); }
        let mut ctrl = Vec::new(); let mut pos = Vec::new(); let mut trs = Vec::new();
        let mut deg = vec![0usize; n]; for &(g, _) in &pairs { deg[g as usize] += 1; }
        for &(g, s) in &sp.held {
            for &h in &tm[s as usize] { if h != g as usize { pos.push(cos(g as usize, h)); ctrl.push(cos(g as usize, rng.random_range(0..n))); } }
            // train-pair analog: g with members of one of its training sets
            for &(g2, t) in sp.train.iter().filter(|p| p.0 == g) { let _ = g2; for &h in tm[t as usize].iter().take(30) { if h != g as usize { trs.push(cos(g as usize, h)); } } }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let single: Vec<f64> = (0..20000).map(|_| { let a = rng.random_range(0..n); let b = rng.random_range(0..n); (a,b) }).filter(|&(a,b)| a!=b && deg[a]==1 && deg[b]==1).map(|(a,b)| cos(a,b)).collect();
        println!("held-pair mean {:.4}; held gene vs random gene {:.4}; held gene vs its training co-members {:.4}; single-set random pairs {:.4}", mean(&pos), mean(&ctrl), mean(&trs), mean(&single));
    }
    println!("dim {dim} ep {epochs} lr {lr} wd {wd} bs {bs}: {:.1}s loss {:.4} | held ratio {:.3} auc {:.3} | train ratio {:.3} auc {:.3} | relu held {:.3}/{:.3} | rec auc {:.3} r@1 {:.3} (chance {:.3}) sizeauc {:.3}",
        t.elapsed().as_secs_f64(), log.last().map(|x| x.1).unwrap_or(f64::NAN), e.held_out.ratio, e.held_out.auc, e.training.ratio, e.training.auc, e.held_out_relu.ratio, e.held_out_relu.auc, e.recovery.auc, e.recovery.recall_at[&1], e.recovery.chance_recall_at[&1], e.recovery.set_size_auc);
}
