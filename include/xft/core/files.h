// defines: read_json_file, write_file_atomic, remove_tree
//
// Why remove_tree: the torch wheel's libtorch_cpu.so exports its own copy of std::filesystem,
// and in a process that links it std::filesystem::remove_all crashes on a non-empty directory.
// Other std::filesystem calls are safe; removing a tree goes through POSIX nftw instead.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace xft {

// Reads a whole JSON file; errors name the file and the line of a syntax error.
nlohmann::json read_json_file(const std::string& path);
// Writes text to path through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& text);
// rm -rf: removes path and everything under it; a missing path is not an error.
void remove_tree(const std::string& path);

}  // namespace xft
