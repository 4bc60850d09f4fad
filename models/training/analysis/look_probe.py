"""How a DR model's outputs move when a real photograph's look changes.

    .deps/venv/bin/python models/training/analysis/look_probe.py MODEL.onnx PHOTO... [--size 576]

Each photograph is scored as nightscreen's card prescribes (whole frame
stretched bilinearly to the input size, ImageNet mean/std, NCHW) as it is,
cropped to its field, brighter (x1.5, x2, x3), more saturated (x1.5) and
with more contrast (x1.5). A grader grades all of these alike; a model that
does not is reading the camera, not the fundus.

2026-12-07, dr-screen 2.0.0: `sample_dark.png` p(gradable) 0.000, x2 0.947;
`issue_2.png` 0.030, saturation x1.5 0.724; scikit-image's normal
`retina.jpg` p(r3) 0.03, saturation x1.5 0.85, contrast x1.5 0.81.
"""
import argparse

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageEnhance

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def field_crop(im):
    a = np.asarray(im)
    ys, xs = np.where(a.max(2) > 25)
    return im.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)) if len(xs) else im


def variants(im):
    yield 'as is', im
    yield 'field only', field_crop(im)
    for g in (1.5, 2.0, 3.0):
        yield f'brighter x{g}', Image.eval(im, lambda v, g=g: min(255, int(v * g)))
    yield 'saturation x1.5', ImageEnhance.Color(im).enhance(1.5)
    yield 'contrast x1.5', ImageEnhance.Contrast(im).enhance(1.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('photos', nargs='+')
    ap.add_argument('--size', type=int, default=576)
    a = ap.parse_args()
    sess = ort.InferenceSession(a.model, providers=['CPUExecutionProvider'])
    name = sess.get_inputs()[0].name
    print('| photograph | look | p(gradable) | p(r0/r1/r2/r3) | p(m1) |\n| --- | --- | --- | --- | --- |')
    for path in a.photos:
        im = Image.open(path).convert('RGB')
        for look, v in variants(im):
            x = np.asarray(v.resize((a.size, a.size), Image.BILINEAR)).astype(np.float32) / 255
            x = ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
            p = sess.run(None, {name: x})[0][0]
            print(f'| {path.split("/")[-1]} | {look} | {p[5]:.3f} | {p[0]:.2f}/{p[1]:.2f}/{p[2]:.2f}/{p[3]:.2f} | {p[4]:.2f} |')


if __name__ == '__main__':
    main()
