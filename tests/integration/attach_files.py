"""Small files of each type attach/ takes (CONTRACT §9), made here, and ones it
refuses: for test_attach.py and bench/run."""

import struct
import zlib


def png(w=100, h=50):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\0" + b"\x80\x20\x10" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg(w=640, h=480):
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def gif(w=16, h=16):
    return (b"GIF89a" + struct.pack("<HH", w, h) + b"\x00\x00\x00"
            + b"\x2c\0\0\0\0" + struct.pack("<HH", w, h) + b"\x00\x02\x02\x44\x01\x00\x3b")


def webp(w=320, h=200):
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + struct.pack("<I", w - 1)[:3] \
        + struct.pack("<I", h - 1)[:3]
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def pdf(pages=2, pad=0):
    kids = " ".join("%d 0 R" % (3 + i) for i in range(pages))
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            ("<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages)).encode()]
    objs += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * pages
    body = b"%PDF-1.4\n"
    for i, o in enumerate(objs):
        body += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    if pad:
        body += b"%" + b"x" * pad + b"\n"
    return body + b"trailer << /Root 1 0 R >>\n%%EOF\n"


def zipfile_bytes():
    return b"PK\x03\x04" + b"\x14\x00" + b"\0" * 100


TYPES = {"a.png": ("PNG", "image", "image/png", png),
         "b.jpg": ("JPEG", "image", "image/jpeg", jpeg),
         "c.gif": ("GIF", "image", "image/gif", gif),
         "d.webp": ("WebP", "image", "image/webp", webp),
         "e.pdf": ("PDF", "document", "application/pdf", pdf),
         "f.md": ("text", "document", "text/plain", lambda: "# Notes\n\nnaïve café\n".encode())}
