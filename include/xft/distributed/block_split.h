// defines: BlockSplit (n items cut into P contiguous blocks, as even as can be: the first n % P
//          blocks one item longer; blocks may be empty when P > n)
//
// The one rule by which expert rows are spread over ranks: the MoE stage's routed experts over
// the expert group (expert_sharding.h) and the merge stage's frozen stacks over the world
// (methods/merge.h). 7 routed experts over 2 ranks: 4 + 3; over 4: 2 + 2 + 2 + 1; over 8:
// 1 x 7 and one empty block, whose rank still joins every collective.
#pragma once
#include <algorithm>
#include <cstdint>

#include "xft/core/error.h"

namespace xft {

struct BlockSplit {
  int64_t items = 0, parts = 1;

  BlockSplit(int64_t items_, int64_t parts_) : items(items_), parts(parts_) {
    XFT_CHECK(items >= 0 && parts >= 1, "block split: ", items, " items over ", parts, " parts");
  }
  int64_t size(int64_t part) const { return items / parts + (part < items % parts ? 1 : 0); }
  int64_t begin(int64_t part) const { return part * (items / parts) + std::min(part, items % parts); }
  int64_t largest() const { return (items + parts - 1) / parts; }
  // The block holding `item` (0 <= item < items).
  int64_t owner(int64_t item) const {
    const int64_t q = items / parts, longer = items % parts;
    // The first `longer` blocks hold q + 1 items each, the rest q (> 0 whenever an item lies there).
    return item < longer * (q + 1) ? item / (q + 1) : longer + (item - longer * (q + 1)) / q;
  }
};

}  // namespace xft
