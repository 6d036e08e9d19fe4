/* gpt_linear.c: the linear layer (y = x W^T + b, W stored (out, in) as in PyTorch and llm.c)
 * expressed as device GEMMs. */
#include "core/gpt_internal.h"

void gpt_linear_forward(xdt_device *dev, float *out, const float *inp, const float *w,
                        const float *bias, int n, int ic, int oc) {
    /* out (n,oc) = inp (n,ic) . W^T (ic,oc) + b (the bias in the GEMM's epilogue where the
     * backend can) */
    if (bias)
        xdt_device_gemm_bias(dev, false, true, n, oc, ic, 1.0f, inp, ic, w, ic, 0.0f, out, oc,
                             bias);
    else
        dev->ops->gemm(dev->ctx, false, true, n, oc, ic, 1.0f, inp, ic, w, ic, 0.0f, out, oc);
}

void gpt_linear_backward(xdt_device *dev, float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, int n, int ic, int oc) {
    /* dinp (n,ic) = dout (n,oc) . W (oc,ic) */
    if (dinp)
        dev->ops->gemm(dev->ctx, false, false, n, ic, oc, 1.0f, dout, oc, w, ic, 0.0f, dinp, ic);
    /* dW (oc,ic) += dout^T (oc,n) . inp (n,ic) */
    dev->ops->gemm(dev->ctx, true, false, oc, ic, n, 1.0f, dout, oc, inp, ic, 1.0f, dw, ic);
    if (dbias) dev->ops->bias_grad(dev->ctx, dbias, dout, n, oc);
}

int gpt_linear_gemm_shapes(int n, int ic, int oc, xdt_gemm_shape out[3]) {
    out[0] = (xdt_gemm_shape){false, true, n, oc, ic, 1};  /* out = inp W^T */
    out[1] = (xdt_gemm_shape){false, false, n, ic, oc, 1}; /* dinp = dout W */
    out[2] = (xdt_gemm_shape){true, false, oc, ic, n, 1};  /* dW += dout^T inp */
    return 3;
}
