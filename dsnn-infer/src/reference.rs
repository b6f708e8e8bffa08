//! A straightforward scalar implementation of the integer semantics of
//! `docs/integer-inference.md`, written independently of the engine (direct
//! loops over decoded weights, one output at a time) to check it bit for bit.

use crate::model::{IntModel, Logits, Requant, Step};
use crate::weights::ShiftWeight;

/// Activations of one image: `c x h x w` values.
struct Img {
    v: Vec<i64>,
    c: usize,
    h: usize,
    w: usize,
}

fn shift_by(v: i64, d: i32) -> i64 {
    if d >= 0 {
        v * (1i64 << d)
    } else {
        v.div_euclid(1i64 << (-d).min(62))
    }
}

/// Integer logits of `n` quantised images, computed by the reference.
pub fn reference_logits(model: &IntModel, x: &[i32], n: usize) -> Logits {
    let per = model.input.channels * model.input.height * model.input.width;
    let (lo, hi) = (model.act.lo(), model.act.hi());
    let clamp = |v: i128| v.clamp(i128::from(lo), i128::from(hi)) as i64;
    let mut values = Vec::new();
    let mut fraction_bits = 0;
    for img in 0..n {
        let mut cur = Img {
            v: x[img * per..(img + 1) * per]
                .iter()
                .map(|&v| i64::from(v))
                .collect(),
            c: model.input.channels,
            h: model.input.height,
            w: model.input.width,
        };
        let mut saved = Vec::new();
        for step in &model.steps {
            let (layer, epi, geo) = match step {
                Step::Conv {
                    layer,
                    kernel,
                    stride,
                    padding,
                    groups,
                    epilogue,
                    ..
                } => (layer, epilogue, Some((*kernel, *stride, *padding, *groups))),
                Step::Linear { layer, epilogue } => (layer, epilogue, None),
                Step::MaxPool2 => {
                    let (h, w) = (cur.h / 2, cur.w / 2);
                    let mut v = Vec::new();
                    for c in 0..cur.c {
                        for y in 0..h {
                            for xx in 0..w {
                                let mut m = i64::MIN;
                                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                                    m = m
                                        .max(cur.v[(c * cur.h + 2 * y + dy) * cur.w + 2 * xx + dx]);
                                }
                                v.push(m);
                            }
                        }
                    }
                    cur = Img { v, c: cur.c, h, w };
                    continue;
                }
                Step::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => {
                    let (k, st, p) = (*kernel, *stride, *padding);
                    let h = (cur.h + 2 * p - k) / st + 1;
                    let w = (cur.w + 2 * p - k) / st + 1;
                    let mut v = Vec::new();
                    for c in 0..cur.c {
                        for y in 0..h {
                            for xx in 0..w {
                                let mut m = i64::MIN;
                                for dy in 0..k {
                                    for dx in 0..k {
                                        let iy = (y * st + dy) as isize - p as isize;
                                        let ix = (xx * st + dx) as isize - p as isize;
                                        if (0..cur.h as isize).contains(&iy)
                                            && (0..cur.w as isize).contains(&ix)
                                        {
                                            m = m.max(
                                                cur.v[(c * cur.h + iy as usize) * cur.w
                                                    + ix as usize],
                                            );
                                        }
                                    }
                                }
                                v.push(m);
                            }
                        }
                    }
                    cur = Img { v, c: cur.c, h, w };
                    continue;
                }
                Step::Concat { parts } => {
                    let branches = saved.split_off(saved.len() + 1 - parts);
                    let mut v = Vec::new();
                    let mut c = 0;
                    for b in branches.iter().chain(std::iter::once(&cur)) {
                        v.extend_from_slice(&b.v);
                        c += b.c;
                    }
                    cur = Img {
                        v,
                        c,
                        h: cur.h,
                        w: cur.w,
                    };
                    continue;
                }
                Step::SaveResidual => {
                    saved.push(Img {
                        v: cur.v.clone(),
                        ..cur
                    });
                    continue;
                }
                Step::SwapResidual => {
                    std::mem::swap(&mut cur, saved.last_mut().expect("validated model"));
                    continue;
                }
                Step::AddResidual { pad, relu } => {
                    let s: Img = saved.pop().expect("validated model");
                    for c in 0..cur.c {
                        for y in 0..cur.h {
                            for xx in 0..cur.w {
                                let short = match pad {
                                    None => s.v[(c * s.h + y) * s.w + xx],
                                    Some(p) if c >= *p && c - p < s.c => {
                                        s.v[((c - p) * s.h + 2 * y) * s.w + 2 * xx]
                                    }
                                    Some(_) => 0,
                                };
                                let i = (c * cur.h + y) * cur.w + xx;
                                let sum = cur.v[i] + short;
                                cur.v[i] = clamp(i128::from(if *relu { sum.max(0) } else { sum }));
                            }
                        }
                    }
                    continue;
                }
                Step::GlobalAvgPool => {
                    let hw = (cur.h * cur.w) as i64;
                    let v = cur
                        .v
                        .chunks(cur.h * cur.w)
                        .map(|p| p.iter().sum::<i64>().div_euclid(hw))
                        .collect();
                    cur = Img {
                        v,
                        c: cur.c,
                        h: 1,
                        w: 1,
                    };
                    continue;
                }
            };
            let ws = layer.packed.unpack();
            let s = layer.acc_shift;
            // For each output: the per-shift sums of the signed inputs.
            let sums_of = |inputs: &mut dyn Iterator<Item = (usize, i64)>, co: usize| {
                let mut sums = vec![0i64; 256];
                for (k, xv) in inputs {
                    if let ShiftWeight::Pow { negative, m } = ws[co * layer.fan_in + k] {
                        sums[usize::from(m)] += if negative { -xv } else { xv };
                    }
                }
                let mut acc = epi.acc_init[co];
                for (m, &sum) in sums.iter().enumerate() {
                    acc += shift_by(sum, s as i32 - m as i32);
                }
                acc
            };
            let (oh, ow, accs) = match geo {
                Some((k, stride, pad, groups)) => {
                    let oh = (cur.h + 2 * pad - k) / stride + 1;
                    let ow = (cur.w + 2 * pad - k) / stride + 1;
                    // Output channel `co` reads the input channels of its group.
                    let (cin_g, cout_g) = (cur.c / groups, layer.cout / groups);
                    let mut accs = Vec::new();
                    for co in 0..layer.cout {
                        let first = co / cout_g * cin_g;
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut inputs = Vec::new();
                                for ci in 0..cin_g {
                                    for ky in 0..k {
                                        for kx in 0..k {
                                            let iy = (oy * stride + ky) as isize - pad as isize;
                                            let ix = (ox * stride + kx) as isize - pad as isize;
                                            if iy < 0
                                                || ix < 0
                                                || iy >= cur.h as isize
                                                || ix >= cur.w as isize
                                            {
                                                continue;
                                            }
                                            let xv = cur.v[((first + ci) * cur.h + iy as usize)
                                                * cur.w
                                                + ix as usize];
                                            inputs.push(((ci * k + ky) * k + kx, xv));
                                        }
                                    }
                                }
                                accs.push(sums_of(&mut inputs.into_iter(), co));
                            }
                        }
                    }
                    (oh, ow, accs)
                }
                None => {
                    let accs = (0..layer.cout)
                        .map(|co| sums_of(&mut cur.v.iter().copied().enumerate(), co))
                        .collect();
                    (1, 1, accs)
                }
            };
            let hw = oh * ow;
            let v: Vec<i64> = accs
                .iter()
                .enumerate()
                .map(|(i, &acc)| {
                    let c = i / hw;
                    match &epi.requant {
                        Requant::Shift { relu } => {
                            let v = clamp(i128::from(acc.div_euclid(1i64 << s)));
                            if *relu {
                                v.max(0)
                            } else {
                                v
                            }
                        }
                        Requant::Affine {
                            mul,
                            add,
                            mul_shift,
                            relu,
                            ..
                        } => {
                            let t = i128::from(acc) * i128::from(mul[c]) + i128::from(add[c]);
                            let v = clamp(t.div_euclid(1i128 << (s + mul_shift)));
                            if *relu {
                                v.max(0)
                            } else {
                                v
                            }
                        }
                        Requant::Logits => acc,
                    }
                })
                .collect();
            if matches!(epi.requant, Requant::Logits) {
                values.extend_from_slice(&v);
                fraction_bits = model.act.fraction_bits + s;
                break;
            }
            cur = Img {
                v,
                c: layer.cout,
                h: oh,
                w: ow,
            };
        }
    }
    Logits {
        n,
        classes: model.classes,
        values,
        fraction_bits,
    }
}
