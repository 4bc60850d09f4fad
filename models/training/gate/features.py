"""The gate's image statistics, written once for both back ends (ops.py).

Input: the DR model's own tensor, [N, 3, H, W] float32, (x/255 - mean)/std
with ImageNet mean and std, any H and W. Steps:

1. Undo the normalisation (0..1 RGB) and bring the frame to a fixed grid:
   Resize (bilinear) to 384 x 384 -- an identity for today's 384-px input --
   then 3 x 3 block means (128 x 128, the texture grid) and 2 x 2 block means
   of that (64 x 64, the colour grid). A 384-px tensor is thus reduced by
   exact 3x3 and 6x6 block averages; a larger future input is first
   resampled to 384 without anti-aliasing (fine up to about 2x).
2. Exposure: `ref` is the brightest 8 x 8 block mean (stride 4) of the
   per-pixel maximum channel on the 64 grid; every statistic is computed on
   the frame divided by `ref`, so an under-exposed photograph of a fundus
   looks like a normal one (image quality is the DR model's question, not
   the gate's). 8-px blocks are large enough that a thin white bar or
   burnt-in text does not set the exposure.
3. `dark`: soft mask of pixels whose maximum channel is below 15 % of ref
   (the black surround of a fundus camera's field); `lit` = 1 - dark.
   Statistics "over lit" are lit-weighted means.

Features (in FEATURES order):
  dark_frac      share of the frame that is dark
  corner_dark    dark share of the four 8 x 8 corners of the 64 grid
  centre_dark    dark share of the central 16 x 16
  r_mean, b_mean mean chromaticity R/(R+G+B), B/(R+G+B) over lit
  r_sd, g_sd     spread (sd) of chromaticity r and g over lit
  warm_frac      share of lit pixels with R > G > B (soft)
  grey_frac      share of lit pixels with saturation (max-min)/max < 0.2 (soft)
  lum_mean       mean luminance over lit, relative to ref (fall-off, disc)
  lum_cv         coefficient of variation of luminance over lit
  grad_mean      mean relative gradient |d log G| of the green channel on the
                 128 grid over the eroded lit interior (the field's rim and
                 the black border are excluded)
  edge_frac      share of that interior whose relative gradient exceeds 0.2
                 (strong edges: natural scenes, text, clip-art)
  vessel_mean    mean black top-hat of the green channel (128 grid, 5 x 5
                 closing, relative to the closing) over the interior: thin
                 dark lines and dots such as vessels
  vessel_frac    share of the interior where that top-hat exceeds 0.1
"""
import numpy as np

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
FEATURES = [
    "dark_frac",
    "corner_dark",
    "centre_dark",
    "r_mean",
    "b_mean",
    "r_sd",
    "g_sd",
    "warm_frac",
    "grey_frac",
    "lum_mean",
    "lum_cv",
    "grad_mean",
    "edge_frac",
    "vessel_mean",
    "vessel_frac",
]
EPS = 1e-3


def _chan(B, x, c):
    return B.slice(x, 1, c, c + 1)


def _soft_less(B, v, t, width):
    """~1 where v < t, ~0 where v > t; `width` is the soft edge's scale."""
    return B.sigmoid(B.div(B.sub(t, v), width))


def _wmean(B, w, v, wsum, axes=(1, 2, 3)):
    return B.div(B.reduce_mean(B.mul(w, v), axes), wsum)


def features(B, x):
    """[N, F, 1, 1] statistics of the tensor x."""
    sp = (2, 3)
    mean = B.const(np.array(MEAN, np.float32).reshape(1, 3, 1, 1))
    std = B.const(np.array(STD, np.float32).reshape(1, 3, 1, 1))
    rgb = B.clip(B.add(B.mul(x, std), mean), 0.0, 1.0)
    g384 = B.resize(rgb, 384, 384)
    g128 = B.avgpool(g384, 3, 3)
    g64 = B.avgpool(g128, 2, 2)

    # exposure reference
    mx64 = B.reduce_max(g64, [1])
    ref = B.maximum(B.reduce_max(B.avgpool(mx64, 8, 4), [1, 2, 3]), B.const(0.02))
    c64 = B.div(g64, ref)
    mx = B.div(mx64, ref)
    mn = B.reduce_min(c64, [1])
    dark = _soft_less(B, mx, B.const(0.15), B.const(0.03))
    lit = B.sub(B.const(1.0), dark)

    dark_frac = B.reduce_mean(dark, (1, 2, 3))
    corners = [
        B.slice(B.slice(dark, 2, y0, y1), 3, x0, x1) for (y0, y1) in ((0, 8), (56, 64)) for (x0, x1) in ((0, 8), (56, 64))
    ]
    corner_dark = B.reduce_mean(B.concat(corners, 1), (1, 2, 3))
    centre_dark = B.reduce_mean(B.slice(B.slice(dark, 2, 24, 40), 3, 24, 40), (1, 2, 3))

    wsum = B.add(B.reduce_mean(lit, (1, 2, 3)), B.const(1e-4))
    R, G, Bl = (_chan(B, c64, k) for k in range(3))
    s = B.add(B.add(B.add(R, G), Bl), B.const(EPS))
    r, g, b = B.div(R, s), B.div(G, s), B.div(Bl, s)
    r_mean = _wmean(B, lit, r, wsum)
    g_mean = _wmean(B, lit, g, wsum)
    b_mean = _wmean(B, lit, b, wsum)
    r_sd = B.sqrt(B.add(_wmean(B, lit, B.mul(B.sub(r, r_mean), B.sub(r, r_mean)), wsum), B.const(1e-8)))
    g_sd = B.sqrt(B.add(_wmean(B, lit, B.mul(B.sub(g, g_mean), B.sub(g, g_mean)), wsum), B.const(1e-8)))
    warm = B.mul(
        B.sigmoid(B.div(B.sub(R, G), B.const(0.02))), B.sigmoid(B.div(B.sub(G, Bl), B.const(0.02)))
    )
    warm_frac = _wmean(B, lit, warm, wsum)
    sat = B.div(B.sub(mx, mn), B.add(mx, B.const(EPS)))
    grey_frac = _wmean(B, lit, _soft_less(B, sat, B.const(0.2), B.const(0.04)), wsum)
    lum = B.add(B.add(B.mul(R, B.const(0.299)), B.mul(G, B.const(0.587))), B.mul(Bl, B.const(0.114)))
    lum_mean = _wmean(B, lit, lum, wsum)
    lum_sd = B.sqrt(B.add(_wmean(B, lit, B.mul(B.sub(lum, lum_mean), B.sub(lum, lum_mean)), wsum), B.const(1e-8)))
    lum_cv = B.div(lum_sd, B.add(lum_mean, B.const(EPS)))

    # texture on the 128 grid, green channel, lit interior only
    c128 = B.div(g128, ref)
    dark128 = _soft_less(B, B.reduce_max(c128, [1]), B.const(0.15), B.const(0.03))
    interior = B.sub(B.const(1.0), B.maxpool(dark128, 7, 3))
    lg = _chan(B, c128, 1)
    lg = B.add(lg, B.const(0.02))
    dx = B.div(B.sub(B.slice(lg, 3, 1, None), B.slice(lg, 3, 0, -1)), B.add(B.slice(lg, 3, 1, None), B.slice(lg, 3, 0, -1)))
    dy = B.div(B.sub(B.slice(lg, 2, 1, None), B.slice(lg, 2, 0, -1)), B.add(B.slice(lg, 2, 1, None), B.slice(lg, 2, 0, -1)))
    dx = B.slice(dx, 2, 0, -1)
    dy = B.slice(dy, 3, 0, -1)
    grad = B.mul(B.const(2.0), B.sqrt(B.add(B.add(B.mul(dx, dx), B.mul(dy, dy)), B.const(1e-8))))
    w = B.slice(B.slice(interior, 2, 0, -1), 3, 0, -1)
    wsum128 = B.add(B.reduce_mean(w, (1, 2, 3)), B.const(1e-4))
    grad_mean = _wmean(B, w, grad, wsum128)
    edge_frac = _wmean(B, w, B.sub(B.const(1.0), _soft_less(B, grad, B.const(0.2), B.const(0.03))), wsum128)

    # thin dark structures (vessels): black top-hat of the green channel,
    # closing with a 5 x 5 square on the 128 grid, relative to the closing
    g0 = _chan(B, c128, 1)
    closing = B.mul(B.const(-1.0), B.maxpool(B.mul(B.const(-1.0), B.maxpool(g0, 5, 2)), 5, 2))
    tophat = B.div(B.sub(closing, g0), B.add(closing, B.const(0.02)))
    vessel_mean = _wmean(B, interior, tophat, B.add(B.reduce_mean(interior, (1, 2, 3)), B.const(1e-4)))
    vessel_frac = _wmean(
        B, interior, B.sub(B.const(1.0), _soft_less(B, tophat, B.const(0.1), B.const(0.02))),
        B.add(B.reduce_mean(interior, (1, 2, 3)), B.const(1e-4)),
    )

    feats = [
        dark_frac,
        corner_dark,
        centre_dark,
        r_mean,
        b_mean,
        r_sd,
        g_sd,
        warm_frac,
        grey_frac,
        lum_mean,
        lum_cv,
        grad_mean,
        edge_frac,
        vessel_mean,
        vessel_frac,
    ]
    assert len(feats) == len(FEATURES)
    return B.concat(feats, 1)


def classifier(B, f, mu, sd, layers):
    """f: [N, F, 1, 1] -> [N, 1] probability. `layers` is a list of (W, b);
    tanh between layers, sigmoid at the end (one layer = logistic regression)."""
    h = B.div(B.sub(B.flatten(f), B.const(mu.reshape(1, -1))), B.const(sd.reshape(1, -1)))
    for i, (W, b) in enumerate(layers):
        h = B.add(B.matmul(h, B.const(W)), B.const(b.reshape(1, -1)))
        if i < len(layers) - 1:
            h = B.tanh(h)
    return B.sigmoid(h)
