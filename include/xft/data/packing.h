// defines: pack_rows, collate_packed (data.packing: several examples per row)
//
// A packed micro-batch holds the same examples as the unpacked one, laid end to end in rows of
// at most row_length (data.max_length) tokens: the loss, its reduction and the sampler's order
// are unchanged (a packed batch is a pure function of its indices, so a resumed run packs the
// same rows), only the padding goes. Each token carries its document number in attention_mask
// (0 = padding) and its position within its document in position_ids, so attention stays inside
// a document (model/attention.h) and RoPE restarts at each one: every example's loss is what it
// is unpacked. The first label of every document is ignored, so no token learns to predict the
// next document (it is BOS, ignored anyway).
#pragma once
#include <cstdint>
#include <vector>

#include "xft/data/batcher.h"

namespace xft {

class InstructionDataset;

// First fit in the given order: each length goes to the first row with room for it, else to a
// new row. Returns the positions (into `lengths`) each row holds, in order. Every length must be
// in [1, row_length].
std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths, int64_t row_length);

// The examples at `indices` packed by pack_rows into [rows, longest row] tensors, padded on the
// right with pad_id (document 0, label kIgnoreLabel, position 0).
Batch collate_packed(const InstructionDataset& data, const std::vector<int64_t>& indices, int64_t pad_id,
                     int64_t row_length);

}  // namespace xft
