#include "xft/data/packing.h"

#include <algorithm>

#include <torch/torch.h>

#include "xft/core/error.h"
#include "xft/data/instruction_data.h"

namespace xft {

std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths, int64_t row_length) {
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> used;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t len = lengths[i];
    XFT_CHECK(len >= 1 && len <= row_length, "pack_rows: example ", i, " has ", len,
              " tokens; expected [1, data.max_length = ", row_length, "]");
    size_t r = 0;
    while (r < rows.size() && used[r] + len > row_length) ++r;
    if (r == rows.size()) {
      rows.emplace_back();
      used.push_back(0);
    }
    rows[r].push_back(static_cast<int64_t>(i));
    used[r] += len;
  }
  return rows;
}

Batch collate_packed(const InstructionDataset& data, const std::vector<int64_t>& indices, int64_t pad_id,
                     int64_t row_length) {
  XFT_CHECK(!indices.empty(), "collate_packed: expected at least one example index");
  const int64_t n = static_cast<int64_t>(data.size());
  std::vector<int64_t> lengths;
  for (const int64_t i : indices) {
    XFT_CHECK(i >= 0 && i < n, "collate_packed: example index ", i, " is out of range; expected [0, ", n, ")");
    lengths.push_back(static_cast<int64_t>(data[static_cast<size_t>(i)].input_ids.size()));
  }
  const auto rows = pack_rows(lengths, row_length);
  int64_t longest = 0;
  for (const auto& row : rows) {
    int64_t used = 0;
    for (const int64_t k : row) used += lengths[static_cast<size_t>(k)];
    longest = std::max(longest, used);
  }
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  const int64_t B = static_cast<int64_t>(rows.size());
  Batch batch;
  batch.input_ids = torch::full({B, longest}, pad_id, opts);
  batch.attention_mask = torch::zeros({B, longest}, opts);
  batch.labels = torch::full({B, longest}, kIgnoreLabel, opts);
  batch.position_ids = torch::zeros({B, longest}, opts);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto doc = batch.attention_mask.accessor<int64_t, 2>();
  auto labels = batch.labels.accessor<int64_t, 2>();
  auto pos = batch.position_ids.accessor<int64_t, 2>();
  batch.needs_mask = false;
  for (int64_t r = 0; r < B; ++r) {
    int64_t t = 0, d = 0;
    for (const int64_t k : rows[static_cast<size_t>(r)]) {
      const Example& ex = data[static_cast<size_t>(indices[static_cast<size_t>(k)])];
      ++d;
      for (size_t j = 0; j < ex.input_ids.size(); ++j, ++t) {
        ids[r][t] = ex.input_ids[j];
        doc[r][t] = d;
        labels[r][t] = j == 0 ? kIgnoreLabel : ex.labels[j];
        pos[r][t] = static_cast<int64_t>(j);
      }
    }
    batch.needs_mask = batch.needs_mask || d > 1 || t < longest;
    batch.tokens += t;
  }
  batch.loss_tokens = batch.labels.ne(kIgnoreLabel).sum().item<int64_t>();
  return batch;
}

}  // namespace xft
