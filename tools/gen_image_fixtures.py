#!/usr/bin/env python3
"""Fixtures for vt's image loader (vt/io/image.h) through the commands (tests/cli/vae_cli.sh) and
tests/test_image_io.cpp: one 64x64 picture (a colour ramp with a disc and a bar, so every channel
varies) written by Pillow in every format the loader promises.

Writes tests/fixtures/images/:
  picture.png          8-bit RGB, the reference pixels
  picture.bmp          the same pixels, 24-bit BMP
  picture.tga          the same pixels, uncompressed TGA
  picture.jpg          JPEG quality 90, 4:2:0 chroma subsampling (lossy)
  picture_jpg.png      Pillow's decode of picture.jpg (decoders differ by a few levels in the IDCT
                       and chroma upsampling, so vt's decode is compared to it with a tolerance)
  gray_alpha.png       8-bit gray + alpha (to_rgb composites alpha onto white)
About 20 KB in all.
"""
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "images")


def picture():
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = x * 4
    rgb[..., 1] = y * 4
    rgb[..., 2] = 255 - (x + y) * 2
    disc = (x - 40) ** 2 + (y - 24) ** 2 < 12**2
    rgb[disc] = (230, 40, 40)
    rgb[44:52, 8:40] = (20, 20, 200)
    return rgb


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = picture()
    im = Image.fromarray(rgb, "RGB")
    im.save(os.path.join(OUT, "picture.png"))
    im.save(os.path.join(OUT, "picture.bmp"))
    im.save(os.path.join(OUT, "picture.tga"), compression=None)
    jpg = os.path.join(OUT, "picture.jpg")
    im.save(jpg, quality=90, subsampling="4:2:0")
    Image.open(jpg).convert("RGB").save(os.path.join(OUT, "picture_jpg.png"))
    la = np.zeros((16, 16, 2), np.uint8)
    la[..., 0] = np.arange(16)[None, :] * 16
    la[..., 1] = np.arange(16)[:, None] * 17
    Image.fromarray(la, "LA").save(os.path.join(OUT, "gray_alpha.png"))


if __name__ == "__main__":
    main()
