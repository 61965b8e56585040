"""An offline stand-in for Places365: scene-like pictures, written in the real folder layouts.

The real data set cannot be downloaded everywhere (CI, air-gapped laptops), so `./places sample-data`
paints small data instead. The 10 tutorial classes have hand-made recipes (a runway is a grey strip with a
dashed centre line in perspective, an igloo a white dome with block lines, ...); every other official
category gets a recipe derived from its index (palette, shape family, texture, horizon, indoor or outdoor).
Positions, scales, colours, light, noise, blur and objects borrowed from other classes vary per image, so
classes overlap and a CNN has to learn shapes, not one colour per class.

Images are mostly JPEG, about 10 % PNG and 5 % grayscale, 96 to 512 pixels wide and high, not all square;
the file extension always matches the content. An image's bytes depend only on (seed, official category,
image number), never on which other classes are requested.

Modules, each one concern:

  painting.py         colours, textures and the canvas (`Painter`)
  elements.py         scenery several recipes share: sky, ground, trees, buildings, people, cars, ...
  tutorial_scenes.py  the 10 tutorial classes' hand-made recipes
  family_scenes.py    the recipe of every other category, derived from its official index
  rendering.py        one image: size and format, scene, distractors, camera, encoding
  layouts.py          `generate`: the three layouts on disk, written atomically, in parallel

bench/sample_data_difficulty.py measures how hard the data is to learn (its figures are in the README, "Measured
here"). This package writes files for ingestion to read and is no part of it: no Beam worker imports it, so
setup.py does not ship it.
"""

from sample_data.layouts import generate
from sample_data.rendering import ImageSpec, image_spec

__all__ = ["ImageSpec", "generate", "image_spec"]
