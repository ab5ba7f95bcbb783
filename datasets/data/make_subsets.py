#!/usr/bin/env python3
"""Cut the small real datasets shipped in `datasets/data/` (standard library only, no numpy).

Usage (from the repository root):

    python3 datasets/data/make_subsets.py \
        --fashion-dir /usr/share/datasets/fashion-mnist \
        --digits-csv /path/to/sklearn/datasets/data/digits.csv.gz

Outputs (gzip with mtime 0 and no stored file name, so re-running gives identical bytes):

    datasets/data/fashion-mnist-test-1k/t10k-images-idx3-ubyte.gz   first 1,000 test images
    datasets/data/fashion-mnist-test-1k/t10k-labels-idx1-ubyte.gz   their labels
    datasets/data/uci-digits/digits-images-idx3-ubyte.gz            all 1,797 8x8 digits
    datasets/data/uci-digits/digits-labels-idx1-ubyte.gz            their labels

Fashion-MNIST is sliced byte for byte: the IDX header is rewritten with the new count and the
first N records are copied unchanged. The UCI digits hold integer pixel counts 0..16 (on-pixels
in a 4x4 block); they are written as IDX u8 with v' = floor(v * 255 / 16 + 1/2), computed in
integers as (v * 510 + 16) // 32, so 0 -> 0, 8 -> 128 and 16 -> 255.
"""

import argparse
import csv
import gzip
import io
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FASHION_TEST_COUNT = 1000
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_maybe_gzip(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


def write_gzip(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(payload)


def idx_images(count, rows, cols, pixels):
    assert len(pixels) == count * rows * cols
    return struct.pack(">IIII", IMAGES_MAGIC, count, rows, cols) + bytes(pixels)


def idx_labels(labels):
    return struct.pack(">II", LABELS_MAGIC, len(labels)) + bytes(labels)


def slice_fashion(fashion_dir, out_dir, count):
    images = read_maybe_gzip(os.path.join(fashion_dir, "t10k-images-idx3-ubyte.gz"))
    labels = read_maybe_gzip(os.path.join(fashion_dir, "t10k-labels-idx1-ubyte.gz"))
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    if magic != IMAGES_MAGIC or len(images) != 16 + n * rows * cols:
        sys.exit("unexpected Fashion-MNIST images file")
    lmagic, ln = struct.unpack(">II", labels[:8])
    if lmagic != LABELS_MAGIC or ln != n or len(labels) != 8 + n:
        sys.exit("unexpected Fashion-MNIST labels file")
    record = rows * cols
    write_gzip(
        os.path.join(out_dir, "t10k-images-idx3-ubyte.gz"),
        idx_images(count, rows, cols, images[16 : 16 + count * record]),
    )
    write_gzip(os.path.join(out_dir, "t10k-labels-idx1-ubyte.gz"), idx_labels(labels[8 : 8 + count]))
    print(f"fashion-mnist: {count} of {n} test images, {rows}x{cols}")


def convert_digits(csv_path, out_dir):
    text = read_maybe_gzip(csv_path).decode("ascii")
    pixels, labels = [], []
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        values = [int(float(v)) for v in row]
        if len(values) != 65:
            sys.exit(f"digits line {line_no}: {len(values)} fields, expected 65")
        *image, label = values
        if not all(0 <= v <= 16 for v in image) or not 0 <= label <= 9:
            sys.exit(f"digits line {line_no}: value out of range")
        pixels.extend((v * 510 + 16) // 32 for v in image)
        labels.append(label)
    write_gzip(os.path.join(out_dir, "digits-images-idx3-ubyte.gz"), idx_images(len(labels), 8, 8, pixels))
    write_gzip(os.path.join(out_dir, "digits-labels-idx1-ubyte.gz"), idx_labels(labels))
    print(f"uci-digits: {len(labels)} images, 8x8")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--digits-csv", required=True, help="sklearn/datasets/data/digits.csv.gz")
    args = parser.parse_args()
    slice_fashion(args.fashion_dir, os.path.join(HERE, "fashion-mnist-test-1k"), FASHION_TEST_COUNT)
    convert_digits(args.digits_csv, os.path.join(HERE, "uci-digits"))


if __name__ == "__main__":
    main()
