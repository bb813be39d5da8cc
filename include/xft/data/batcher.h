// defines: Batch, collate, count_loss_tokens, BatchSampler, shuffle_in_place
//
// Turns an InstructionDataset into padded [B, T] batches in a deterministic order that a resumed
// run reproduces exactly (epoch + position are all the state there is).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include <torch/types.h>

namespace xft {

class InstructionDataset;

struct Batch {
  torch::Tensor input_ids, attention_mask, labels;  // [B, T] int64, padded on the right to the longest
  torch::Tensor position_ids;  // [B, T] int64 for packed rows (restarting at each document), else undefined
  int64_t loss_tokens = 0;     // number of labels != kIgnoreLabel
  int64_t tokens = 0;          // real (not padding) tokens
  // False when every row is one document without padding: plain causal attention is exact then,
  // and the model can take scaled_dot_product_attention's fast path (no attention_mask).
  bool needs_mask = true;
};

// Pads with pad_id (attention_mask 0, label kIgnoreLabel). Throws on an empty or out-of-range index list.
Batch collate(const InstructionDataset& data, const std::vector<int64_t>& indices, int64_t pad_id);
// The labels != kIgnoreLabel of the examples at `indices` (a Batch's loss_tokens), without
// building the batch: what the trainer counts over a whole global batch.
int64_t count_loss_tokens(const InstructionDataset& data, const std::vector<int64_t>& indices);

// Fisher-Yates with our own bounded draw: std::shuffle and std::uniform_int_distribution differ
// between standard libraries, std::mt19937_64's raw output does not.
void shuffle_in_place(std::vector<int64_t>& v, std::mt19937_64& gen);

// Each epoch: a permutation of [0, n) from a generator seeded by (seed, epoch), cut into consecutive
// batches of batch_size (the last partial batch kept unless drop_last).
// group_by_length: each chunk of batch_size * 50 shuffled indices is sorted by length (descending,
// stable) before cutting, then the epoch's batches are shuffled with the same generator, so a batch
// holds similar lengths (little padding) while the batch order stays random.
class BatchSampler {
 public:
  BatchSampler(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed, bool group_by_length, bool drop_last);

  int64_t batches_per_epoch() const;
  std::vector<int64_t> next();  // indices of the next batch; moves to the next epoch automatically
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }  // batches already taken in this epoch
  // Resume: after set_position(e, p), next() continues exactly as the run that reported epoch() == e
  // and position() == p. p may equal batches_per_epoch() (the epoch is finished).
  void set_position(int64_t epoch, int64_t position);

  static constexpr int64_t kGroupChunkBatches = 50;

 private:
  std::vector<std::vector<int64_t>> make_epoch(int64_t epoch) const;

  std::vector<int64_t> lengths_;
  int64_t batch_size_;
  uint64_t seed_;
  bool group_by_length_;
  bool drop_last_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  int64_t built_epoch_ = -1;  // epoch whose batches are in batches_
  std::vector<std::vector<int64_t>> batches_;
};

}  // namespace xft
