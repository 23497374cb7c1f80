//! Hand-written CPU kernels for STGCN's layers on burn's `flex` backend: the temporal and the
//! graph convolution and the LayerNorm, forward and backward.
//!
//! burn builds a temporal convolution from generic tensor ops: an im2col copy (`cat` of `Kt`
//! shifted views), two products, a bias add, a residual (a zero-padding `cat` or a product), and
//! the gate's sigmoid and product, each a separate pass over memory, most of them on one thread,
//! and each with its own backward step. Here the same arithmetic is a few flat passes per
//! sample: `Kt` strided products read the input in place (no im2col), the residual is folded
//! into the weights, bias and activation are applied while the products are still in cache, with
//! rayon over the samples; the backward is written out by hand (`temporal`, `spatial`, `norm`)
//! and enters burn's autodiff graph as one node per layer (`autodiff`). The `Kt = 3` temporal
//! convolutions use Winograd's minimal filtering (`winograd`: F(4, 3) or F(2, 3), half or two
//! thirds of the multiply–adds). Outputs are written once, never zeroed first ([`map_chunks`]).
//! The products go to the `gemm` crate, except those with 1, 2 or 4 output columns (`small`);
//! the elementwise passes are compiled for AVX2 + FMA as well and chosen at run time
//! ([`vectorized!`]). Other backends (CUDA) keep the generic path. Tests compare the two paths, values and gradients;
//! [`without_fused`] switches the kernels off for such comparisons.
//!
//! A run's numbers do not depend on how many threads computed them: wherever a kernel splits a
//! floating-point sum into partial sums (the weight gradients, one partial per sample or group
//! of rows, added in a fixed tree: [`sum_parts`]), the split is a function of the shapes alone.
//! The thread count only chooses which thread computes what (samples in parallel or the products
//! themselves), which leaves every value's bits as they are (tested: `tests`, and a training run
//! in pools of 1, 2 and 3 threads in `train`).

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelIterator};

use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

thread_local! {
    static FUSED_OFF: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with the fused kernels switched off on this thread: every layer takes burn's generic
/// tensor-op path (for comparisons of values, gradients and speed).
pub fn without_fused<R>(f: impl FnOnce() -> R) -> R {
    let before = FUSED_OFF.with(|c| c.replace(true));
    let r = f();
    FUSED_OFF.with(|c| c.set(before));
    r
}

fn fused_on() -> bool {
    !FUSED_OFF.with(Cell::get)
}

/// Samples per pass of an inference forward on the CPU backend (`None` elsewhere): a larger
/// batch goes through the network in slices of this many samples, so that the activations held
/// are a slice's, not the whole batch's (the teacher's batch-1140 forward would hold over a GB).
/// The values are the same up to rounding: every layer works per sample. Speed is unchanged
/// (measured).
pub(crate) fn inference_slice<B: Backend>() -> Option<usize> {
    let flex = TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<FlexTensor>();
    (fused_on() && flex).then_some(64)
}

/// `tensor`'s primitive as `T` when that is `B`'s float primitive type, else `tensor` back.
pub(crate) fn downcast<B: Backend, T: 'static, const D: usize>(
    tensor: Tensor<B, D>,
) -> Result<T, Tensor<B, D>> {
    if !fused_on() || TypeId::of::<B::FloatTensorPrimitive>() != TypeId::of::<T>() {
        return Err(tensor);
    }
    let boxed: Box<dyn Any> = Box::new(tensor.into_primitive().tensor());
    Ok(*boxed.downcast::<T>().expect("type ids are equal"))
}

/// The inverse of [`downcast`]; only called with `B`'s own float primitive type.
pub(crate) fn upcast<B: Backend, T: 'static, const D: usize>(t: T) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    let prim = *boxed
        .downcast::<B::FloatTensorPrimitive>()
        .expect("T is B's float primitive");
    Tensor::from_primitive(TensorPrimitive::Float(prim))
}

/// The tensor's elements in row-major order (a view when already contiguous, else a copy).
pub(crate) fn contiguous_f32(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    let n = t.layout().num_elements();
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        std::borrow::Cow::Borrowed(&t.storage::<f32>()[..n])
    } else {
        std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>()[..n].to_vec())
    }
}

/// A contiguous flex tensor holding `values` with `shape`.
pub(crate) fn flex_from_vec<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A strided read-only matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major with row stride `rs`.
    pub fn rows(data: &'a [f32], rs: usize) -> Self {
        Mat { data, rs, cs: 1 }
    }
    /// The transpose of a row-major matrix with row stride `rs`.
    pub fn t(data: &'a [f32], rs: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: rs,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || self.data.len() > (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// `dst (+)= lhs · rhs`: `lhs` is `m × k`, `rhs` is `k × n`, `dst` is `m × n` row-major with row
/// stride `dst_rs`. `parallel` lets the product itself use the rayon pool; the values do not
/// depend on it or on the pool's size (`gemm` splits the output between threads, and each
/// value's sum runs over blocks of the inner dimension fixed by the shape; tested).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds of every element the product touches: checked here, so the call below is sound.
    assert!(dst.len() >= (m - 1) * dst_rs + n, "gemm: dst too short");
    assert!(lhs.fits(m, k) && rhs.fits(k, n), "gemm: operand too short");
    if small::fits((m, n, k)) {
        return small::product((m, n, k), dst, dst_rs, lhs, rhs, accumulate);
    }
    let par = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertions above keep every strided access inside the three slices, and
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// A chunk of a new buffer handed out by [`map_chunks`]: not initialised yet.
pub(crate) type Fresh<'a> = &'a mut [MaybeUninit<f32>];

/// Two new buffers of `len_a` and `len_b` values, cut into the same number of chunks (of
/// `chunk_a`, `chunk_b` values; `len_b` may be 0: empty chunks), and `f(chunk index, a chunk,
/// b chunk)` over them, in parallel unless `sequential` (then the products inside `f` use the
/// pool); the results in chunk order. The chunks come uninitialised: most kernels write every
/// output value once, and zeroing first (a pass over every output) cost 3–4 % of a training
/// step; a kernel that accumulates starts with [`zeroed`].
///
/// # Safety
/// `f` must write every element of both chunks it is given. (In unit tests the chunks start
/// as NaN, so that a value left unwritten shows in the results the tests compare.)
pub(crate) unsafe fn map_chunks<R: Send>(
    (len_a, chunk_a): (usize, usize),
    (len_b, chunk_b): (usize, usize),
    sequential: bool,
    f: impl Fn(usize, Fresh, Fresh) -> R + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<R>) {
    let (mut a, mut b) = (Vec::with_capacity(len_a), Vec::with_capacity(len_b));
    if cfg!(test) {
        a.resize(len_a, f32::NAN);
        b.resize(len_b, f32::NAN);
        a.clear();
        b.clear();
    }
    let mut chunks_b = b.spare_capacity_mut()[..len_b].chunks_mut(chunk_b.max(1));
    let jobs: Vec<_> = a.spare_capacity_mut()[..len_a]
        .chunks_mut(chunk_a)
        .map(|ca| (ca, chunks_b.next().unwrap_or_default()))
        .collect();
    assert!(
        chunks_b.next().is_none(),
        "map_chunks: more b chunks than a chunks"
    );
    let run = |(i, (ca, cb)): (usize, (Fresh, Fresh))| f(i, ca, cb);
    let results = if sequential {
        jobs.into_iter().enumerate().map(run).collect()
    } else {
        jobs.into_par_iter().enumerate().map(run).collect()
    };
    // SAFETY: the chunks cover the first `len_a` (`len_b`) elements, and `f` wrote every
    // element of every chunk (the caller's promise; a panic in `f` leaves before this line,
    // with lengths 0).
    unsafe {
        a.set_len(len_a);
        b.set_len(len_b);
    }
    (a, b, results)
}

/// `c` filled with zeros, as initialised floats.
pub(crate) fn zeroed(c: Fresh<'_>) -> &mut [f32] {
    for v in c.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was initialised just above.
    unsafe { written(c) }
}

/// `c` as initialised floats.
///
/// # Safety
/// Every element of `c` has been written.
pub(crate) unsafe fn written(c: Fresh<'_>) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller promises every element is
    // initialised.
    unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Initialised floats seen as a [`Fresh`] chunk, for kernels that write their output either
/// into a new buffer or into a scratch one. Sound because those kernels only ever store floats.
pub(crate) fn fresh(c: &mut [f32]) -> Fresh<'_> {
    // SAFETY: same layout; nothing writes an uninitialised value through the result.
    unsafe { &mut *(c as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

thread_local! {
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A per-thread reusable buffer of `len` values whose contents are left over from earlier use
/// (not zeroed): only for buffers that are written in full before they are read. Goes back to
/// its thread's pool when dropped. In unit tests it starts as NaN, so that a read before a
/// write shows in the results.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    pub fn new(len: usize) -> Self {
        let mut buf = SCRATCH.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        if cfg!(test) {
            buf[..len].fill(f32::NAN);
        }
        Scratch { buf, len }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // During thread teardown the pool may be gone: the buffer is then just freed.
        let _ = SCRATCH.try_with(|p| p.borrow_mut().push(buf));
    }
}

/// Gradients of one layer: input, weight (`W` or `θ`), bias and residual projection.
pub(crate) struct LayerGrads {
    pub x: Vec<f32>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub proj: Option<Vec<f32>>,
}

/// The element-wise sum of equal-length partial results (one per task), as a parallel tree:
/// the output layer's weight gradient has a 128k-value partial per sample. The tree's shape is
/// fixed by the number of parts alone (halves at the midpoint, `rayon::join`), so the order of
/// the floating-point additions, and the sum to the last bit, never depends on which thread
/// stole which task (rayon's own `reduce` splits adaptively, and its association changed with
/// the timing of whatever else ran in the process).
pub(crate) fn sum_parts(mut parts: Vec<Vec<f32>>) -> Vec<f32> {
    assert!(!parts.is_empty(), "at least one task");
    fn tree(parts: &mut [Vec<f32>]) -> Vec<f32> {
        if parts.len() == 1 {
            return std::mem::take(&mut parts[0]);
        }
        let (left, right) = parts.split_at_mut(parts.len() / 2);
        let (mut a, b) = rayon::join(|| tree(left), || tree(right));
        for (x, y) in a.iter_mut().zip(&b) {
            *x += y;
        }
        a
    }
    tree(&mut parts)
}

/// Defines a function whose body is compiled twice: for AVX2 + FMA, taken when the CPU has them,
/// and for the baseline target. The kernels' elementwise loops are written so that the compiler
/// vectorises them (slices zipped, no branches); with AVX2 they run eight lanes wide instead of
/// four. Helpers called from such a body must be `#[inline(always)]` to be compiled with it.
macro_rules! vectorized {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use vectorized;

vectorized! {
    /// ReLU's backward: `d = g ⊙ [out > 0]`.
    fn relu_backward(grad: &[f32], out: &[f32], d: &mut [f32]) {
        for ((d, g), o) in d.iter_mut().zip(grad).zip(out) {
            *d = if *o > 0.0 { *g } else { 0.0 };
        }
    }
}

/// Whole copies of `row`, at least 64 values: a buffer of rows is then processed tile by tile
/// in flat loops that vectorise whatever the row length.
fn tile(row: &[f32]) -> Vec<f32> {
    row.repeat(64usize.div_ceil(row.len().max(1)))
}

/// Every row of `dst` (rows of `row.len()` values) set to `row`.
pub(crate) fn fill_rows<'a>(dst: Fresh<'a>, row: &[f32]) -> &'a mut [f32] {
    // Long copies: a copy per 64 values spent more on the calls than on the copying.
    let tile = row.repeat(4096usize.div_ceil(row.len().max(1)));
    for chunk in dst.chunks_mut(tile.len()) {
        copy_to(&tile[..chunk.len()], chunk);
    }
    // SAFETY: every chunk was written in full (`tile` is at least as long as a chunk).
    unsafe { written(dst) }
}

vectorized! {
    /// `dst = src` (equal lengths) into a new buffer.
    fn copy_to(src: &[f32], dst: Fresh) {
        assert_eq!(src.len(), dst.len());
        for (d, v) in dst.iter_mut().zip(src) {
            d.write(*v);
        }
    }
}

vectorized! {
    /// `acc += Σ_rows m` for `m` with rows of `acc.len()` values (a bias gradient).
    fn add_rows(m: &[f32], acc: &mut [f32]) {
        let mut sums = tile(acc);
        sums.fill(0.0);
        for chunk in m.chunks(sums.len()) {
            for (s, v) in sums.iter_mut().zip(chunk) {
                *s += v;
            }
        }
        let len = acc.len();
        for (i, s) in sums.iter().enumerate() {
            acc[i % len] += s;
        }
    }
}

/// `eˣ` within 2 ulp of the exact value, branch-free so that loops over it vectorise:
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial for `eʳ` (truncation
/// below 1.3e-7 relative), `2ⁿ` built from its exponent bits. `x` is clamped to `[−87, 88]`
/// (no overflow, no denormal scale); NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // ln 2 in two parts (Cody–Waite): `n·LN2_HI` is exact for the `n` that occur here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds a float of magnitude below 2²² to an integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    // `shifted` holds `n = round(x·log₂e)` in its low mantissa bits; integer arithmetic on the
    // bits gives `2ⁿ` (a float-to-int conversion would not vectorise: it must saturate).
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// `max(x, 0)` that keeps NaN (as burn's `relu`), so a diverged run shows as NaN.
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// The logistic function `1 / (1 + e⁻ˣ)` with [`exp`] (no overflow: the exponent is clamped).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

mod autodiff;
mod norm;
mod small;
mod spatial;
mod temporal;
mod winograd;
pub(crate) use autodiff::{norm_forward, spatial_forward, temporal_forward};
pub use norm::LN_EPS;
pub(crate) use spatial::HostGraph;

/// Nonlinearity of a temporal convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `(P + x_in) ⊙ σ(Q)`.
    Glu,
    /// `relu(conv + x_in)`.
    Relu,
    /// `σ(conv)`, no residual.
    Sigmoid,
}

#[cfg(test)]
mod tests;
