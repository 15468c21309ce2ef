"""Draw ``shop-sign.jpg``: a simple bakery storefront with an "OPEN" sign.

The picture is an example input for text-replacement edits (for example
"change the sign to say CLOSED"). It is drawn entirely with Pillow, using no
randomness, so running this script again gives the same picture. The only
thing that can vary between machines is the font: the script uses the first
bold TrueType font it finds (DejaVu Sans Bold, Liberation Sans Bold, Arial
Bold, ...) and otherwise falls back to Pillow's built-in font.

Usage::

    python make_shop_sign.py        # writes shop-sign.jpg next to this file

Requires Pillow (10.1 or newer for the built-in-font fallback).
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1024, 768
SCALE = 2  # draw at 2x and downsample, for smooth edges
OUT_PATH = Path(__file__).with_name("shop-sign.jpg")

BOLD_FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "/System/Library/Fonts/Supplemental/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
    "DejaVuSans-Bold.ttf",  # let FreeType search its own font path
]


def font(size):
    """Return a bold TrueType font of ``size`` px, or Pillow's default font."""
    for candidate in BOLD_FONTS:
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def s(*values):
    """Scale coordinates from 1024x768 space to the supersampled canvas."""
    return [round(v * SCALE) for v in values]


def lerp(c1, c2, t):
    return tuple(round(a + (b - a) * t) for a, b in zip(c1, c2, strict=True))


def vertical_gradient(draw, box, top, bottom):
    x0, y0, x1, y1 = s(*box)
    for y in range(y0, y1):
        t = (y - y0) / max(1, y1 - y0 - 1)
        draw.line([(x0, y), (x1 - 1, y)], fill=lerp(top, bottom, t))


def draw_scene(draw):
    # Sky and building wall.
    vertical_gradient(draw, (0, 0, WIDTH, 110), (120, 176, 228), (196, 224, 245))
    vertical_gradient(draw, (0, 110, WIDTH, 640), (196, 110, 82), (160, 84, 62))
    draw.rectangle(s(0, 100, WIDTH, 126), fill=(226, 214, 192))  # cornice
    draw.rectangle(s(0, 126, WIDTH, 132), fill=(150, 138, 120))

    # Faint brick courses on the wall.
    for row, y in enumerate(range(144, 640, 24)):
        draw.line(s(0, y, WIDTH, y), fill=(176, 96, 72), width=SCALE)
        offset = 0 if row % 2 else 30
        for x in range(offset, WIDTH, 60):
            draw.line(s(x, y, x, y + 24), fill=(176, 96, 72), width=SCALE)

    # Shopfront surround (painted timber).
    draw.rectangle(s(120, 140, 904, 640), fill=(36, 72, 58))

    # Sign board with OPEN and a smaller "Bakery" line.
    board = (160, 156, 864, 372)
    draw.rounded_rectangle(s(*board), radius=14 * SCALE, fill=(28, 56, 45))
    draw.rounded_rectangle(s(172, 168, 852, 360), radius=10 * SCALE,
                           outline=(212, 175, 90), width=5 * SCALE)
    cx = (board[0] + board[2]) / 2
    draw.text(s(cx, 252), "OPEN", font=font(150 * SCALE),
              fill=(250, 244, 226), anchor="mm")
    draw.text(s(cx, 334), "Bakery", font=font(40 * SCALE),
              fill=(212, 175, 90), anchor="mm")

    # Striped awning with a scalloped edge.
    top, bottom, left, right = 384, 436, 128, 896
    stripe = 48
    for i, x in enumerate(range(left, right, stripe)):
        colour = (190, 40, 45) if i % 2 == 0 else (246, 238, 222)
        draw.polygon([tuple(s(x + 6, top)), tuple(s(x + stripe + 6, top)),
                      tuple(s(x + stripe, bottom)), tuple(s(x, bottom))],
                     fill=colour)
        draw.chord(s(x, bottom - stripe / 2, x + stripe, bottom + stripe / 2),
                   0, 180, fill=colour)
    draw.rectangle(s(left, top - 8, right + 6, top), fill=(120, 30, 34))

    # Shop window: glass, a shelf of loaves, mullions and a reflection.
    win = (150, 472, 560, 612)
    vertical_gradient(draw, win, (170, 205, 220), (112, 150, 168))
    draw.rectangle(s(win[0], 576, win[2], 584), fill=(120, 84, 52))  # shelf
    for i, x in enumerate(range(176, 540, 64)):
        loaf = (212, 150, 80) if i % 2 == 0 else (188, 120, 60)
        draw.ellipse(s(x, 548, x + 52, 578), fill=loaf)
        for k in range(3):
            draw.line(s(x + 14 + 10 * k, 554, x + 20 + 10 * k, 568),
                      fill=(150, 96, 48), width=2 * SCALE)
    draw.polygon([tuple(s(190, 472)), tuple(s(230, 472)),
                  tuple(s(170, 548)), tuple(s(150, 548)), tuple(s(150, 524))],
                 fill=(205, 228, 238))
    draw.rectangle(s(*win), outline=(24, 48, 38), width=8 * SCALE)
    draw.line(s(355, win[1], 355, win[3]), fill=(24, 48, 38), width=6 * SCALE)
    draw.rectangle(s(150, 612, 560, 640), fill=(28, 58, 46))  # stall riser

    # Door with a glass panel, a kick plate and a brass knob.
    door = (604, 452, 760, 640)
    draw.rectangle(s(*door), fill=(92, 52, 32))
    vertical_gradient(draw, (622, 470, 742, 560), (170, 205, 220), (120, 158, 176))
    draw.rectangle(s(622, 470, 742, 560), outline=(60, 34, 20), width=4 * SCALE)
    draw.rectangle(s(622, 580, 742, 626), outline=(70, 40, 24), width=3 * SCALE)
    draw.ellipse(s(728, 566, 742, 580), fill=(214, 180, 80))
    draw.rectangle(s(*door), outline=(24, 48, 38), width=6 * SCALE)

    # Narrow side window.
    side = (790, 472, 874, 612)
    vertical_gradient(draw, side, (170, 205, 220), (112, 150, 168))
    draw.rectangle(s(*side), outline=(24, 48, 38), width=8 * SCALE)
    draw.rectangle(s(790, 612, 874, 640), fill=(28, 58, 46))

    # Wall lamps either side of the sign.
    for x in (72, 952):
        draw.rectangle(s(x - 3, 200, x + 3, 236), fill=(40, 40, 40))
        draw.polygon([tuple(s(x - 20, 236)), tuple(s(x + 20, 236)),
                      tuple(s(x + 12, 264)), tuple(s(x - 12, 264))],
                     fill=(50, 50, 50))
        draw.ellipse(s(x - 10, 258, x + 10, 276), fill=(255, 226, 150))

    # Pavement, kerb and road.
    vertical_gradient(draw, (0, 640, WIDTH, 728), (178, 176, 170), (150, 148, 142))
    for x in range(0, WIDTH, 96):
        draw.line(s(x, 640, x - 40, 728), fill=(132, 130, 126), width=2 * SCALE)
    draw.line(s(0, 684, WIDTH, 684), fill=(132, 130, 126), width=2 * SCALE)
    draw.rectangle(s(0, 728, WIDTH, 740), fill=(205, 203, 198))
    draw.rectangle(s(0, 740, WIDTH, HEIGHT), fill=(70, 72, 76))

    # Planter by the door.
    draw.polygon([tuple(s(564, 604)), tuple(s(600, 604)),
                  tuple(s(594, 660)), tuple(s(570, 660))], fill=(150, 78, 48))
    for (px, py, r) in ((573, 594, 15), (591, 591, 15), (582, 576, 17)):
        draw.ellipse(s(px - r, py - r, px + r, py + r), fill=(58, 124, 62))


def main():
    canvas = Image.new("RGB", (WIDTH * SCALE, HEIGHT * SCALE))
    draw_scene(ImageDraw.Draw(canvas))
    image = canvas.resize((WIDTH, HEIGHT), Image.LANCZOS)
    image.save(OUT_PATH, "JPEG", quality=88)
    print(f"wrote {OUT_PATH} ({WIDTH}x{HEIGHT})")


if __name__ == "__main__":
    main()
