// defines: read_json_file, write_file_atomic, describe_write_error, fsync_directory, remove_tree
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
// Writes text to path through a temporary file (fsynced) and a rename; a failed write (full
// disk, file size limit) is an xft::Error naming the file and leaves no temporary behind.
void write_file_atomic(const std::string& path, const std::string& text);
// strerror(err) plus what it means for the user: ENOSPC "the disk is full", EFBIG "the file
// size limit (ulimit -f) was hit", EDQUOT "the disk quota is used up".
std::string describe_write_error(int err);
// Makes the entries of `dir` (files created or renamed in it) durable across a power loss.
void fsync_directory(const std::string& dir);
// rm -rf: removes path and everything under it; a missing path is not an error.
void remove_tree(const std::string& path);

}  // namespace xft
