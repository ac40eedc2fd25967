#pragma once

// Read-only views of a parsed JSON value with one interface over two DOMs: nlohmann::json (what
// the protocol layer gives for kernel messages it parses, and the fallback for what simdjson
// refuses) and simdjson's DOM (what the .ipynb reader and the reader of kernel output parse
// with: several times faster, and no DOM of its own to build and free). Readers written once as
// templates over a view (output_reader.h, ipynb.cc, iopub_output.cc) work on either.
//
// Both views behave as nlohmann does: a repeated object key means its last value; Dump() writes
// compact JSON with keys sorted, UTF-8 as is, as nlohmann::json::dump does.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cellgate::notebook {

// Compact JSON text of `json`, as nlohmann writes it; invalid UTF-8 is replaced, never throws.
std::string DumpCompactJson(const nlohmann::json& json);

// A view of one value of an nlohmann::json DOM, which must outlive the view.
class NlohmannJsonView {
 public:
  explicit NlohmannJsonView(const nlohmann::json& json) : json_(&json) {}

  bool is_null() const { return json_->is_null(); }
  bool is_boolean() const { return json_->is_boolean(); }
  bool is_integer() const { return json_->is_number_integer(); }
  bool is_string() const { return json_->is_string(); }
  bool is_array() const { return json_->is_array(); }
  bool is_object() const { return json_->is_object(); }

  // Precondition: is_boolean() / is_string().
  bool boolean() const { return json_->get<bool>(); }
  absl::string_view string() const { return json_->get_ref<const std::string&>(); }

  // An integer that fits in int64_t; nullopt for anything else.
  std::optional<int64_t> int64() const {
    if (json_->is_number_unsigned()) {
      const uint64_t value = json_->get<uint64_t>();
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(value);
    }
    if (json_->is_number_integer()) return json_->get<int64_t>();
    return std::nullopt;
  }

  // Number of elements of an array or members of an object; 0 for anything else.
  size_t size() const { return json_->is_array() || json_->is_object() ? json_->size() : 0; }

  // object[key]; nullopt when this is not an object or has no such key.
  std::optional<NlohmannJsonView> Field(absl::string_view key) const {
    if (!json_->is_object()) return std::nullopt;
    const auto it = json_->find(std::string_view(key.data(), key.size()));
    if (it == json_->end()) return std::nullopt;
    return NlohmannJsonView(*it);
  }

  // Calls visit(index, element) for each element of an array, in order, until one returns an
  // error, which is returned. OK for anything but an array.
  template <typename Visit>
  absl::Status ForEachElement(Visit visit) const {
    if (!json_->is_array()) return absl::OkStatus();
    size_t index = 0;
    for (const nlohmann::json& element : *json_) {
      if (absl::Status status = visit(index++, NlohmannJsonView(element)); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  // Calls visit(key, value) for each member of an object until one returns an error, which is
  // returned. OK for anything but an object.
  template <typename Visit>
  absl::Status ForEachMember(Visit visit) const {
    if (!json_->is_object()) return absl::OkStatus();
    for (const auto& [key, value] : json_->items()) {
      if (absl::Status status = visit(absl::string_view(key), NlohmannJsonView(value));
          !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  nlohmann::json ToNlohmann() const { return *json_; }
  std::string Dump() const { return DumpCompactJson(*json_); }

 private:
  const nlohmann::json* json_;
};

// A view of one value of a simdjson DOM; the parser that made it must outlive the view (and
// the string_views it hands out).
class SimdjsonView {
 public:
  explicit SimdjsonView(simdjson::dom::element element) : element_(element) {}

  bool is_null() const { return element_.is_null(); }
  bool is_boolean() const { return element_.is_bool(); }
  bool is_integer() const {
    return element_.type() == simdjson::dom::element_type::INT64 ||
           element_.type() == simdjson::dom::element_type::UINT64;
  }
  bool is_string() const { return element_.is_string(); }
  bool is_array() const { return element_.is_array(); }
  bool is_object() const { return element_.is_object(); }

  bool boolean() const { return element_.get_bool().value_unsafe(); }
  absl::string_view string() const { return ToAbsl(element_.get_string().value_unsafe()); }

  std::optional<int64_t> int64() const {
    if (element_.type() == simdjson::dom::element_type::INT64) {
      return element_.get_int64().value_unsafe();
    }
    if (element_.type() == simdjson::dom::element_type::UINT64) {
      const uint64_t value = element_.get_uint64().value_unsafe();
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(value);
    }
    return std::nullopt;
  }

  size_t size() const {
    if (element_.is_array()) return element_.get_array().value_unsafe().size();
    if (element_.is_object()) return element_.get_object().value_unsafe().size();
    return 0;
  }

  // The last member named `key`, as nlohmann keeps it.
  std::optional<SimdjsonView> Field(absl::string_view key) const {
    if (!element_.is_object()) return std::nullopt;
    std::optional<SimdjsonView> found;
    const simdjson::dom::object object = element_.get_object().value_unsafe();
    for (const simdjson::dom::key_value_pair member : object) {
      if (ToAbsl(member.key) == key) found = SimdjsonView(member.value);
    }
    return found;
  }

  template <typename Visit>
  absl::Status ForEachElement(Visit visit) const {
    if (!element_.is_array()) return absl::OkStatus();
    const simdjson::dom::array array = element_.get_array().value_unsafe();
    size_t index = 0;
    for (const simdjson::dom::element element : array) {
      if (absl::Status status = visit(index++, SimdjsonView(element)); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  // Members in file order, a repeated key as often as it appears: a reader that stores them by
  // key (a later one overwriting) ends with nlohmann's last-wins value.
  template <typename Visit>
  absl::Status ForEachMember(Visit visit) const {
    if (!element_.is_object()) return absl::OkStatus();
    const simdjson::dom::object object = element_.get_object().value_unsafe();
    for (const simdjson::dom::key_value_pair member : object) {
      if (absl::Status status = visit(ToAbsl(member.key), SimdjsonView(member.value));
          !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  // The same value as an nlohmann DOM (recursion bounded by the parser's depth limit).
  nlohmann::json ToNlohmann() const;
  std::string Dump() const { return DumpCompactJson(ToNlohmann()); }

 private:
  static absl::string_view ToAbsl(std::string_view text) {
    return absl::string_view(text.data(), text.size());
  }

  simdjson::dom::element element_;
};

}  // namespace cellgate::notebook
