//! The context's buffer pool: a dropped tensor's buffer is reused by the next tensor of the same
//! size, but not while an open encoder may still read it, and a reused buffer's bytes past the
//! tensor's elements are zero, as a fresh buffer's are.

mod common;

use polygrad::GpuTensor;

#[test]
fn dropped_buffers_wait_for_open_encoders_then_are_reused_with_zero_padding() {
    let Some(ctx) = common::gpu() else { return };
    ctx.set_poison_outputs(false);
    // A size no other test in this process uses: 38 floats, padded to whole vec4s (160 bytes).
    let before = ctx.cached_buffer_bytes();
    let first = GpuTensor::upload(&ctx, "first", &[38], &[7.0; 38]).unwrap();
    let bytes = 160;

    let encoder = ctx.encoder("open while the tensor is dropped");
    drop(first);
    assert_eq!(
        ctx.cached_buffer_bytes(),
        before,
        "a buffer dropped while an encoder is open must not be reusable yet"
    );
    ctx.submit("closing the encoder", encoder).unwrap();
    assert_eq!(ctx.cached_buffer_bytes(), before + bytes);

    // 37 floats take the same buffer; float 37 is now padding and must read 0.
    let second = GpuTensor::upload(&ctx, "second", &[37], &[3.0; 37]).unwrap();
    assert_eq!(
        ctx.cached_buffer_bytes(),
        before,
        "the kept buffer was not reused"
    );
    assert_eq!(second.download(&ctx).unwrap(), vec![3.0; 37]);
    drop(second);
    let third = GpuTensor::output(&ctx, "third", &[38]).unwrap();
    let seen = third.download(&ctx).unwrap();
    ctx.set_poison_outputs(true);
    assert_eq!(&seen[..37], &[3.0; 37], "not the same buffer");
    assert_eq!(seen[37], 0.0, "a reused buffer's padding was not zeroed");

    drop(third);
    ctx.release_cached_buffers();
    assert_eq!(ctx.cached_buffer_bytes(), 0);
}
