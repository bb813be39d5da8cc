// Builds a tiny model from a config, runs it, saves and reloads it: the installed headers,
// library and package config are enough.
#include <iostream>

#include <xft/model/model_io.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  auto config = xft::ModelConfig::from_json({{"model_type", "llama"},
                                             {"vocab_size", 50},
                                             {"hidden_size", 16},
                                             {"intermediate_size", 24},
                                             {"num_hidden_layers", 1},
                                             {"num_attention_heads", 2}},
                                            "consumer");
  xft::CausalLM model(config);
  model->eval();
  torch::NoGradGuard ng;
  auto ids = torch::tensor({{1, 2, 3}}, torch::kInt64);
  auto a = model->forward(ids).logits;
  xft::save_model(*model, argv[1]);
  auto b = xft::load_model(argv[1])->forward(ids).logits;
  const bool same = torch::equal(a, b);
  std::cout << "consumer: logits " << a.sizes() << (same ? " reproduced" : " DIFFER") << "\n";
  return same ? 0 : 1;
}
