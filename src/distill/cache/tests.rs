use super::*;
use crate::backend::CpuInner;
use crate::model::{Preset, StgcnConfig};
use crate::rng::Rng;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every tap read back from the cache equals, bit for bit, what the per-batch forward of a
/// shuffled minibatch gives (PeMSD7's node count and the teacher's shape: the kernels' real
/// paths); a second open reads the files without building them again.
#[test]
fn cached_taps_equal_the_per_batch_forward_bit_for_bit() {
    let data = Dataset::synthetic(228, 6, 96, 3);
    let dev = Default::default();
    let cfg = StgcnConfig::new(Preset::Teacher.channels(), data.nodes, data.n_his);
    let teacher = Stgcn::<CpuInner>::new(&cfg, 4, &dev).unwrap();
    let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &dev);
    let dir = std::env::temp_dir().join(format!("stkd-teacher-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let taps = [Tap::Outputs, Tap::Tcd, Tap::Spatial, Tap::LastBlock];
    let cache =
        TeacherCache::open_or_build(&dir, "t1", &taps, &teacher, &g, &data, 50, &dev).unwrap();
    assert_eq!(cache.built, taps);
    let windows = data.windows(Split::Train);
    assert!(windows > 100, "{windows} windows: several batches");
    let mut order: Vec<usize> = (0..windows).collect();
    Rng::new(1, 1).shuffle(&mut order);
    let mut batcher = Batcher::default();
    for idx in order.chunks(50).take(3) {
        let b = batcher.batch::<CpuInner>(&data, Split::Train, idx, &dev);
        let (y, f) = teacher.forward_features(b.x, &g);
        let c = cache.batch::<CpuInner>(idx, &dev).unwrap();
        assert_eq!(bits(&host(&c.y)), bits(&host(&y)), "outputs");
        assert_eq!(c.y.dims(), y.dims());
        assert_eq!(c.features.spatial.len(), f.spatial.len());
        for (a, b) in c.features.spatial.iter().zip(&f.spatial) {
            assert_eq!(a.dims(), b.dims());
            assert_eq!(bits(&host(a)), bits(&host(b)), "spatial layer");
        }
        assert_eq!(c.features.last_block.dims(), f.last_block.dims());
        assert_eq!(
            bits(&host(&c.features.last_block)),
            bits(&host(&f.last_block))
        );
        let tcd = c.tcd.unwrap();
        assert_eq!(tcd.len(), f.temporal.len());
        for (d, t) in tcd.iter().zip(&f.temporal) {
            let [bb, tt, n, ch] = t.dims();
            assert_eq!(
                bits(d),
                bits(&tcd_teacher(&host(t), [bb, tt, n], ch)),
                "TCD distances"
            );
        }
    }
    // Read again, nothing built; another teacher identity is another file.
    let again =
        TeacherCache::open_or_build(&dir, "t1", &taps[..2], &teacher, &g, &data, 50, &dev).unwrap();
    assert!(again.built.is_empty());
    assert_eq!(
        again.bytes(),
        (windows
            * (data.nodes
                + tcd_teacher_len(10, 228)
                + tcd_teacher_len(8, 228)
                + tcd_teacher_len(6, 228)
                + tcd_teacher_len(4, 228))
            * 4) as u64
    );
    let other =
        TeacherCache::open_or_build(&dir, "t2", &taps[..1], &teacher, &g, &data, 50, &dev).unwrap();
    assert_eq!(other.built, [Tap::Outputs]);
    // An incomplete file (no description) is built again.
    let key = CacheKey {
        code: crate::plan::CODE_VERSION.to_string(),
        teacher: "t1".into(),
        data: data.checksum.clone(),
        windows,
        nodes: data.nodes,
        tap: Tap::Outputs,
    };
    std::fs::remove_file(file_stem(&dir, &key).with_extension("json")).unwrap();
    let rebuilt =
        TeacherCache::open_or_build(&dir, "t1", &taps[..2], &teacher, &g, &data, 50, &dev).unwrap();
    assert_eq!(rebuilt.built, [Tap::Outputs]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_feature_loss_reads_only_its_taps() {
    assert_eq!(Tap::of(LossKind::Tcd), [Tap::Outputs, Tap::Tcd]);
    assert_eq!(Tap::of(LossKind::Scd), [Tap::Outputs, Tap::Spatial]);
    assert_eq!(
        Tap::of(LossKind::Stcd),
        [Tap::Outputs, Tap::Tcd, Tap::Spatial]
    );
    assert_eq!(Tap::of(LossKind::Skd), [Tap::Outputs, Tap::LastBlock]);
    for k in LossKind::ALL {
        assert_eq!(Tap::of(k).is_empty(), !k.needs_teacher(), "{k}");
        assert_eq!(Tap::of(k).len() > 1, k.needs_features(), "{k}");
    }
    assert_eq!(Tap::of(LossKind::Ord), [Tap::Outputs]);
}

/// Two runs starting together on one teacher: one builds, the other waits and reads.
#[test]
fn concurrent_runs_build_a_tap_once() {
    let data = Dataset::synthetic(12, 4, 48, 5);
    let dev = Default::default();
    let cfg = StgcnConfig::new(Preset::Teacher.channels(), data.nodes, data.n_his);
    let teacher = Stgcn::<CpuInner>::new(&cfg, 4, &dev).unwrap();
    let g = GraphKernel::<CpuInner>::new(&data.cheb, data.nodes, &dev);
    let dir = std::env::temp_dir().join(format!("stkd-teacher-cache-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let taps = [Tap::Outputs, Tap::Spatial];
    let built: Vec<Vec<Tap>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    TeacherCache::open_or_build(&dir, "t", &taps, &teacher, &g, &data, 16, &dev)
                        .unwrap()
                        .built
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut built = built;
    built.sort_by_key(Vec::len);
    assert_eq!(built, [vec![], taps.to_vec()]);
    let _ = std::fs::remove_dir_all(&dir);
}
