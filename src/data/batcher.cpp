#include "xft/data/batcher.h"

#include <algorithm>
#include <string>

#include <torch/torch.h>

#include "xft/core/error.h"
#include "xft/data/instruction_data.h"

namespace xft {

namespace {

// Unbiased draw in [0, bound) by rejection: the low values that would make `r % bound` favour
// small results are thrown away.
uint64_t uniform_below(std::mt19937_64& gen, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // == 2^64 mod bound
  for (;;) {
    const uint64_t r = gen();
    if (r >= threshold) return r % bound;
  }
}

// splitmix64 finaliser: nearby (seed, epoch) pairs give unrelated generator states.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

void shuffle_in_place(std::vector<int64_t>& v, std::mt19937_64& gen) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_below(gen, i));
    std::swap(v[i - 1], v[j]);
  }
}

Batch collate(const InstructionDataset& data, const std::vector<int64_t>& indices, int64_t pad_id) {
  XFT_CHECK(!indices.empty(), "collate: expected at least one example index");
  const int64_t n = static_cast<int64_t>(data.size());
  int64_t longest = 0;
  for (const int64_t i : indices) {
    XFT_CHECK(i >= 0 && i < n, "collate: example index ", i, " is out of range; expected [0, ", n, ")");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(data[static_cast<size_t>(i)].input_ids.size()));
  }
  const int64_t b = static_cast<int64_t>(indices.size());
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  Batch batch;
  batch.input_ids = torch::full({b, longest}, pad_id, opts);
  batch.attention_mask = torch::zeros({b, longest}, opts);
  batch.labels = torch::full({b, longest}, kIgnoreLabel, opts);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.attention_mask.accessor<int64_t, 2>();
  auto labels = batch.labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const Example& ex = data[static_cast<size_t>(indices[static_cast<size_t>(r)])];
    for (size_t t = 0; t < ex.input_ids.size(); ++t) {
      ids[r][static_cast<int64_t>(t)] = ex.input_ids[t];
      mask[r][static_cast<int64_t>(t)] = 1;
      labels[r][static_cast<int64_t>(t)] = ex.labels[t];
    }
  }
  batch.loss_tokens = count_loss_tokens(data, indices);
  batch.needs_mask = false;
  for (const int64_t i : indices) {
    const auto len = static_cast<int64_t>(data[static_cast<size_t>(i)].input_ids.size());
    batch.tokens += len;
    batch.needs_mask = batch.needs_mask || len < longest;
  }
  return batch;
}

int64_t count_loss_tokens(const InstructionDataset& data, const std::vector<int64_t>& indices) {
  const int64_t n = static_cast<int64_t>(data.size());
  int64_t count = 0;
  for (const int64_t i : indices) {
    XFT_CHECK(i >= 0 && i < n, "count_loss_tokens: example index ", i, " is out of range; expected [0, ", n, ")");
    for (const auto label : data[static_cast<size_t>(i)].labels) count += label != kIgnoreLabel;
  }
  return count;
}

BatchSampler::BatchSampler(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed, bool group_by_length,
                           bool drop_last)
    : lengths_(std::move(lengths)),
      batch_size_(batch_size),
      seed_(seed),
      group_by_length_(group_by_length),
      drop_last_(drop_last) {
  XFT_CHECK(batch_size_ >= 1, "BatchSampler: batch_size is ", batch_size_, "; expected >= 1");
  XFT_CHECK(!lengths_.empty(), "BatchSampler: the dataset is empty; expected at least one example");
  XFT_CHECK(batches_per_epoch() > 0, "BatchSampler: ", lengths_.size(), " examples make no full batch of ", batch_size_,
            " with drop_last; expected at least batch_size examples");
}

int64_t BatchSampler::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(lengths_.size());
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

std::vector<std::vector<int64_t>> BatchSampler::make_epoch(int64_t epoch) const {
  std::mt19937_64 gen(mix(seed_ ^ mix(static_cast<uint64_t>(epoch))));
  std::vector<int64_t> order(lengths_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  shuffle_in_place(order, gen);

  if (group_by_length_) {
    const size_t chunk = static_cast<size_t>(batch_size_ * kGroupChunkBatches);
    for (size_t begin = 0; begin < order.size(); begin += chunk) {
      const auto first = order.begin() + static_cast<std::ptrdiff_t>(begin);
      const auto last = order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), begin + chunk));
      std::stable_sort(first, last, [&](int64_t a, int64_t b) {
        return lengths_[static_cast<size_t>(a)] > lengths_[static_cast<size_t>(b)];
      });
    }
  }

  // Chunks are whole multiples of batch_size, so cutting the whole order equals cutting each chunk.
  std::vector<std::vector<int64_t>> batches;
  const size_t bs = static_cast<size_t>(batch_size_);
  for (size_t begin = 0; begin < order.size(); begin += bs) {
    const size_t end = std::min(order.size(), begin + bs);
    if (end - begin < bs && drop_last_) break;
    batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(begin),
                         order.begin() + static_cast<std::ptrdiff_t>(end));
  }

  if (group_by_length_) {
    // Sorted chunks would otherwise run from long to short batches: randomise the batch order.
    std::vector<int64_t> perm(batches.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
    shuffle_in_place(perm, gen);
    std::vector<std::vector<int64_t>> shuffled;
    shuffled.reserve(batches.size());
    for (const int64_t p : perm) shuffled.push_back(std::move(batches[static_cast<size_t>(p)]));
    batches = std::move(shuffled);
  }
  return batches;
}

std::vector<int64_t> BatchSampler::next() {
  if (position_ >= batches_per_epoch()) {
    ++epoch_;
    position_ = 0;
  }
  if (built_epoch_ != epoch_) {
    batches_ = make_epoch(epoch_);
    built_epoch_ = epoch_;
  }
  return batches_[static_cast<size_t>(position_++)];
}

void BatchSampler::set_position(int64_t epoch, int64_t position) {
  XFT_CHECK(epoch >= 0, "BatchSampler::set_position: epoch ", epoch, " is negative; expected >= 0");
  XFT_CHECK(position >= 0 && position <= batches_per_epoch(), "BatchSampler::set_position: position ", position,
            " is out of range; expected [0, ", batches_per_epoch(), "] batches per epoch");
  epoch_ = epoch;
  position_ = position;
}

}  // namespace xft
