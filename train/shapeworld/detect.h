// detect.h: finding ShapeWorld objects in any RGB image: the first half of the evaluator.
//
// Algorithm, per image:
//  1. Palette matching in the chroma plane. Each pixel's chroma vector is
//       a = (2R - G - B) / 2,  b = (sqrt(3) / 2) (G - B),
//     i.e. RGB minus its grey component. Blending a colour with any grey (anti-aliased edges,
//     blur into the background), scaling brightness or adding a uniform offset only shortens or
//     keeps this vector; its angle (hue) stays. A pixel whose chroma is below `min_chroma` is
//     background; otherwise it takes the palette colour of nearest hue, if within `max_hue_deg`.
//  2. Connected components (4-connected) per colour label; components smaller than
//     max(min_area_px, min_area_frac x W x H) are dropped as noise.
//  3. Shape from geometry: the component mask is compared with each canonical shape drawn in the
//     square box around the component (centre of the bounding box, half extent = half its longer
//     side); the kind of highest intersection-over-union wins. Size class from the half extent.
#pragma once
#include <vector>

#include "shapeworld/render.h"
#include "shapeworld/scene.h"

namespace vt::shapes {

struct DetectOptions {
  float min_chroma = 50;      // background tint + jitter + noise stay below; palette colours are 126..186
  float max_hue_deg = 35;     // neighbouring palette hues are 48..76 degrees apart
  float min_area_frac = 0.003f;  // the smallest object (a small triangle) covers 0.0128 of the image
  int min_area_px = 8;
};

struct Detection {
  Shape shape = Shape::circle;
  int color = 0;
  SizeClass size = SizeClass::small;
  float cx = 0, cy = 0;       // centre of the bounding box, pixels
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // bounding box, [x0, x1) x [y0, y1)
  int area = 0;               // pixels in the component
  float shape_iou = 0;        // IoU with the winning canonical shape, in [0, 1]
  float width() const { return float(x1 - x0); }
  float height() const { return float(y1 - y0); }
};

// Hue of the palette colour in degrees [0, 360), as the detector sees it.
float palette_hue_deg(int color);

// Objects in the image, ordered by decreasing area.
std::vector<Detection> detect_objects(const Image& image, const DetectOptions& options = {});

// GenEval's position rule (scene.h) on detections.
unsigned relations(const Detection& a, const Detection& b);

}  // namespace vt::shapes
