"""Images that are not fundus photographs, made here or from CC0 / public
domain photographs, for fitting and measuring the gate.

Every image is RGB uint8 at its own size; `to_input` then prepares it as
nightscreen does (whole frame, PIL bilinear to 384 x 384). Each maker takes a
numpy Generator, so a seed gives the same images.

Procedural kinds (PROCEDURAL):
  flat        one colour, any hue, with sensor-like noise
  gradient    linear or radial blend of two random colours
  noise       smoothed colour noise at a random scale (blobs to grain)
  disc        a disc of any hue (orange and red included, 1/2 of them) on
              black: flat, with fall-off, with a soft texture or a highlight;
              sometimes clipped top and bottom or cropped to a rectangle,
              like a fundus camera's field
  bars        colour bars, chequerboards, a colour wheel, grids (test charts)
  grey        grey-only images: ultrasound-like speckle in a fan on black,
              radiograph-like smooth grey with bright blobs, with text
  stars       dark fields with bright spots of any colour
  brown       reddish-brown / orange textures without fundus structure
              (cookie, coffee, wood, leather), full frame or a disc on a
              pale or black ground
  clipart     shapes and text on white
  skin        skin-tone face-like ellipses on a random background

Photograph augmentation (`augment_photo`): random crop (10-100 % of the
area), resized to 256-1000 px wide, flips, rotation, colour jitter (exposure 0.1-1.6, per-channel gain
0.7-1.3, gamma 0.7-1.4), blur, and in 60 % of cases the result pasted into a
black circular field (full, clipped top and bottom, or cropped to a
rectangle), as a fundus camera frames its image.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PROCEDURAL = ["flat", "gradient", "noise", "disc", "bars", "grey", "stars", "brown", "clipart", "skin"]
FUNDUS_LIKE_HUES = [(230, 110, 40), (200, 80, 30), (160, 60, 25), (240, 140, 70), (190, 40, 30), (120, 45, 20)]


def _size(rng, lo=200, hi=900):
    w = int(rng.integers(lo, hi))
    h = int(np.clip(w * rng.uniform(0.6, 1.3), 120, 2000))
    return w, h


def _colour(rng, fundus_like=0.0):
    if rng.random() < fundus_like:
        base = np.array(FUNDUS_LIKE_HUES[rng.integers(len(FUNDUS_LIKE_HUES))], float)
        return np.clip(base * rng.uniform(0.6, 1.15, 3), 0, 255)
    return rng.uniform(0, 255, 3)


def _smooth_noise(rng, w, h, scale, ch=3):
    """Noise smoothed to feature size ~`scale` px (bilinear up-sampling)."""
    sw, sh = max(2, int(w / scale)), max(2, int(h / scale))
    small = rng.normal(0, 1, (sh, sw, ch)).astype(np.float32)
    out = np.stack(
        [np.asarray(Image.fromarray(small[..., k]).resize((w, h), Image.BICUBIC)) for k in range(ch)], -1
    )
    return out / (out.std() + 1e-6)


def _grid(w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx, yy


def _finish(img, rng):
    img = np.clip(img, 0, 255)
    if rng.random() < 0.7:
        img = img + rng.normal(0, rng.uniform(0.5, 4), img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
    return np.asarray(out)


def field_mask(rng, w, h):
    """A fundus camera's field: circle (maybe larger than the frame, so
    clipped top and bottom) and sometimes a rectangular crop. Float 0..1."""
    xx, yy = _grid(w, h)
    cx, cy = w / 2 + rng.normal(0, 0.03) * w, h / 2 + rng.normal(0, 0.03) * h
    kind = rng.integers(3)
    r = min(w, h) * (rng.uniform(0.38, 0.5) if kind == 0 else rng.uniform(0.5, 0.62))
    m = np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0, 1)
    if kind == 2:
        hx, hy = r * rng.uniform(0.7, 0.92), r * rng.uniform(0.6, 0.85)
        m *= (np.abs(xx - cx) < hx) & (np.abs(yy - cy) < hy)
    return m.astype(np.float32)


def flat(rng):
    w, h = _size(rng)
    return _finish(np.broadcast_to(_colour(rng, 0.3), (h, w, 3)).astype(np.float32), rng)


def gradient(rng):
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    a, b = _colour(rng, 0.3), _colour(rng, 0.3)
    if rng.random() < 0.5:
        ang = rng.uniform(0, np.pi)
        t = (xx * np.cos(ang) + yy * np.sin(ang))
    else:
        t = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h))
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    return _finish(a * (1 - t[..., None]) + b * t[..., None], rng)


def noise(rng):
    w, h = _size(rng)
    n = _smooth_noise(rng, w, h, rng.choice([1.5, 4, 12, 40, 120]))
    base = _colour(rng, 0.3)
    return _finish(base + n * rng.uniform(10, 80), rng)


def disc(rng):
    w, h = _size(rng, 300, 1000)
    xx, yy = _grid(w, h)
    m = field_mask(rng, w, h)
    col = _colour(rng, 0.5)
    cx, cy = w / 2, h / 2
    rr = np.hypot(xx - cx, yy - cy) / (min(w, h) / 2)
    img = np.broadcast_to(col, (h, w, 3)).astype(np.float32).copy()
    style = rng.integers(4)
    if style >= 1:  # fall-off towards the rim
        img *= (1 - rng.uniform(0.2, 0.6) * rr**2)[..., None]
    if style >= 2:  # soft texture
        img *= (1 + rng.uniform(0.03, 0.2) * _smooth_noise(rng, w, h, rng.choice([3, 10, 30]), 1))
    if style == 3:  # a highlight somewhere
        hx, hy = cx + rng.uniform(-0.3, 0.3) * w, cy + rng.uniform(-0.3, 0.3) * h
        s = min(w, h) * rng.uniform(0.04, 0.12)
        img += (rng.uniform(30, 120) * np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / (2 * s * s)))[..., None]
    if rng.random() < 0.4:
        img *= rng.uniform(0.1, 0.4)  # dark
    return _finish(img * m[..., None], rng)


def bars(rng):
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    kind = rng.integers(4)
    if kind == 0:
        n = rng.integers(3, 10)
        cols = np.array([_colour(rng) for _ in range(n)])
        img = cols[np.minimum((xx / w * n).astype(int), n - 1)]
        if rng.random() < 0.5:
            img = img.transpose(1, 0, 2)[:h, :w] if h == w else img
    elif kind == 1:
        s = rng.integers(8, 80)
        a, b = _colour(rng), _colour(rng)
        chk = ((xx // s + yy // s) % 2)[..., None]
        img = a * chk + b * (1 - chk)
    elif kind == 2:  # colour wheel on black or white
        cx, cy = w / 2, h / 2
        hue = (np.arctan2(yy - cy, xx - cx) / (2 * np.pi)) % 1
        rr = np.hypot(xx - cx, yy - cy) / (0.45 * min(w, h))
        hsv = np.stack([hue * 255, np.clip(rr, 0, 1) * 255, np.full_like(hue, 255)], -1).astype(np.uint8)
        img = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB")).astype(np.float32)
        bg = 0 if rng.random() < 0.6 else 255
        img[rr > 1] = bg
    else:  # grid of coloured patches
        n, mrow = rng.integers(3, 8), rng.integers(2, 6)
        cols = np.array([[_colour(rng, 0.2) for _ in range(n)] for _ in range(mrow)])
        img = cols[np.minimum((yy / h * mrow).astype(int), mrow - 1), np.minimum((xx / w * n).astype(int), n - 1)]
    return _finish(np.asarray(img, np.float32), rng)


def _text(draw, rng, w, h, fill, n=None):
    for _ in range(rng.integers(1, 6) if n is None else n):
        s = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :/-.")) for _ in range(rng.integers(3, 20)))
        draw.text((int(rng.uniform(0, w * 0.8)), int(rng.uniform(0, h * 0.95))), s, fill=fill)


def grey(rng):
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    kind = rng.integers(3)
    if kind == 0:  # ultrasound: speckle in a fan on black
        apex = (w / 2, -h * rng.uniform(0, 0.2))
        ang = np.arctan2(xx - apex[0], yy - apex[1])
        rad = np.hypot(xx - apex[0], yy - apex[1])
        half = rng.uniform(0.4, 0.8)
        fan = (np.abs(ang) < half) & (rad < h * rng.uniform(0.8, 1.1)) & (rad > h * 0.05)
        sp = np.abs(_smooth_noise(rng, w, h, rng.choice([1.5, 3, 5]), 1)[..., 0])
        tissue = 60 + 50 * _smooth_noise(rng, w, h, 60, 1)[..., 0]
        v = np.clip(tissue * sp, 0, 255) * fan
    elif kind == 1:  # radiograph: smooth grey with bright structures
        v = 40 + 80 * (0.5 + 0.5 * _smooth_noise(rng, w, h, rng.uniform(50, 200), 1)[..., 0])
        for _ in range(rng.integers(1, 5)):
            cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * min(w, h)
            v += rng.uniform(40, 120) * np.exp(-((xx - cx) ** 2 / (2 * s * s) + (yy - cy) ** 2 / (0.5 * s * s)))
        if rng.random() < 0.5:
            v *= field_mask(rng, w, h)
    else:  # grey photograph-like: noise at several scales
        v = 128 + 40 * _smooth_noise(rng, w, h, 30, 1)[..., 0] + 20 * _smooth_noise(rng, w, h, 3, 1)[..., 0]
    img = Image.fromarray(np.clip(np.stack([v] * 3, -1), 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.7:
        _text(ImageDraw.Draw(img), rng, w, h, (255, 255, 255))
    tint = rng.uniform(0.95, 1.05, 3) if rng.random() < 0.3 else np.ones(3)
    return _finish(np.asarray(img, np.float32) * tint, rng)


def stars(rng):
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    img = np.zeros((h, w, 3), np.float32) + rng.uniform(0, 20)
    for _ in range(rng.integers(5, 200)):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.5, 0.02 * min(w, h) + 1)
        x0, x1, y0, y1 = int(max(0, cx - 4 * s)), int(min(w, cx + 4 * s + 1)), int(max(0, cy - 4 * s)), int(min(h, cy + 4 * s + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        g = np.exp(-((xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2) / (2 * s * s))
        img[y0:y1, x0:x1] += g[..., None] * _colour(rng, 0.3)
    return _finish(img, rng)


BROWNS = [(120, 70, 35), (160, 100, 50), (200, 130, 70), (90, 45, 25), (180, 90, 40), (210, 160, 100)]


def brown(rng):
    w, h = _size(rng)
    base = np.array(BROWNS[rng.integers(len(BROWNS))], np.float32) * rng.uniform(0.7, 1.2, 3)
    tex = _smooth_noise(rng, w, h, rng.choice([2, 6, 20, 60]), 1)
    if rng.random() < 0.5:  # grain / wood: stretched noise
        tex = tex + 0.5 * _smooth_noise(rng, w, h, rng.choice([2, 5]), 1)
    img = base * (1 + rng.uniform(0.05, 0.35) * tex)
    if rng.random() < 0.5:  # a round object on a ground
        xx, yy = _grid(w, h)
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
        r = min(w, h) * rng.uniform(0.2, 0.5)
        m = np.clip(r - np.hypot(xx - cx, yy - cy), 0, 1)[..., None]
        ground = np.array([rng.uniform(0, 60)] * 3) if rng.random() < 0.5 else rng.uniform(150, 250, 3)
        img = img * m + ground * (1 - m) * (1 + 0.1 * _smooth_noise(rng, w, h, 20, 1))
    return _finish(img, rng)


def clipart(rng):
    w, h = _size(rng)
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.uniform(225, 255, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 10)):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(10, w / 2), y0 + rng.uniform(10, h / 2)
        col = tuple(int(v) for v in _colour(rng, 0.3))
        [d.rectangle, d.ellipse][rng.integers(2)]([x0, y0, x1, y1], fill=col)
    _text(d, rng, w, h, (0, 0, 0), rng.integers(2, 12))
    return _finish(np.asarray(img, np.float32), rng)


def skin(rng):
    w, h = _size(rng)
    xx, yy = _grid(w, h)
    bg = _colour(rng)
    img = np.broadcast_to(bg, (h, w, 3)).astype(np.float32).copy()
    tone = np.array([rng.uniform(90, 240), 0, 0])
    tone[1] = tone[0] * rng.uniform(0.6, 0.8)
    tone[2] = tone[0] * rng.uniform(0.45, 0.65)
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.4, 0.6)
    ax, ay = w * rng.uniform(0.15, 0.3), h * rng.uniform(0.25, 0.4)
    face = (((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2) < 1
    hair = ((((xx - cx) / (ax * 1.1)) ** 2 + ((yy - cy + ay * 0.3) / (ay * 0.9)) ** 2) < 1) & (yy < cy - ay * 0.4)
    shade = 1 - 0.25 * np.clip(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2, 0, 1)
    img[face] = (tone * shade[..., None])[face]
    img[hair] = rng.uniform(10, 120) * np.array([1, 0.8, 0.6])
    for ex in (-0.35, 0.35):  # eyes
        e = (((xx - cx - ex * ax) / (0.12 * ax)) ** 2 + ((yy - cy + 0.1 * ay) / (0.06 * ay)) ** 2) < 1
        img[e] = 40
    img *= 1 + 0.05 * _smooth_noise(rng, w, h, 8, 1)
    return _finish(img, rng)


MAKERS = {k: globals()[k] for k in PROCEDURAL}


def procedural(rng, n):
    """n images, kinds in turn; returns (images, kinds)."""
    out, kinds = [], []
    for i in range(n):
        k = PROCEDURAL[i % len(PROCEDURAL)]
        out.append(MAKERS[k](rng))
        kinds.append(k)
    return out, kinds


def augment_photo(rng, src):
    """One random view of photograph `src` (H x W x 3 uint8)."""
    im = Image.fromarray(src, "RGB")
    w, h = im.size
    area = rng.uniform(0.1, 1.0)
    aspect = np.exp(rng.uniform(-0.4, 0.4))
    cw = int(np.clip(np.sqrt(area * w * h * aspect), 16, w))
    ch = int(np.clip(np.sqrt(area * w * h / aspect), 16, h))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = im.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.3:
        im = im.transpose(Image.FLIP_TOP_BOTTOM)
    if rng.random() < 0.4:
        im = im.rotate(float(rng.choice([90, 180, 270]) + rng.normal(0, 5)), expand=True, resample=Image.BILINEAR)
    ow = int(rng.integers(256, 1000))
    oh = int(np.clip(ow * rng.uniform(0.6, 1.3), 160, 2000))
    im = im.resize((ow, oh), Image.BILINEAR)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 4)))
    x = np.asarray(im, np.float32) / 255
    exposure = rng.uniform(0.1, 0.4) if rng.random() < 0.25 else rng.uniform(0.6, 1.6)
    x = np.clip(x * rng.uniform(0.7, 1.3, 3) * exposure, 0, 1) ** rng.uniform(0.7, 1.4)
    x = x * 255
    if rng.random() < 0.6:
        x = x * field_mask(rng, ow, oh)[..., None]
    return np.clip(x + rng.normal(0, 1.5, x.shape), 0, 255).astype(np.uint8)


def to_input(rgb, size=384):
    """nightscreen's preprocessing: the whole frame, PIL bilinear (anti-aliased
    when shrinking) to size x size, uint8."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize((size, size), Image.BILINEAR))
