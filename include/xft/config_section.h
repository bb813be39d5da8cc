// defines: overlay_section (a config section read over its defaults: unknown keys and wrong
//          types are errors naming the file and the field)
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace xft {

// `defaults` (a struct's to_json()) with the keys of `section` written over it. Throws
// xft::Error naming `source` when `section` is not an object, has a key `defaults` lacks (the
// known ones listed), or a value of another JSON type (any number may stand for a number).
// `what` names the section in the messages ("training", "distributed").
nlohmann::json overlay_section(nlohmann::json defaults, const nlohmann::json& section, const std::string& source,
                               const std::string& what);

}  // namespace xft
