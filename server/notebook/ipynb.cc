#include "server/notebook/ipynb.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/common/json_nesting.h"
#include "server/notebook/iopub_output.h"
#include "server/notebook/json_view.h"
#include "server/notebook/output_reader.h"

namespace cellgate::notebook {
namespace {

using Json = nlohmann::json;

// Python's json module (and so nbformat) cannot write anything nested deeper than about its
// recursion limit of 1000; refusing deeper input keeps every recursive walk of the DOM (dump,
// OutputFromNbformat) far from the end of the stack.
constexpr int kMaxNestingDepth = 1000;
constexpr size_t kMaxCellIdLength = 64;
// nbformat's random_cell_id(): uuid4().hex[:8].
constexpr int kGeneratedIdHexDigits = 8;
// How much of an offending value an error message quotes.
constexpr size_t kMaxQuotedChars = 64;

// The cell keys ParseIpynb turns into v1::Cell fields; every other key is a cell "extra".
constexpr const char* kCellFields[] = {"id",       "cell_type", "source",
                                       "metadata", "outputs",   "execution_count"};

std::string Dump(const Json& json, int indent = -1) {
  return json.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

std::string Quote(absl::string_view text) {
  if (text.size() <= kMaxQuotedChars) return absl::StrCat("'", absl::CHexEscape(text), "'");
  return absl::StrCat("'", absl::CHexEscape(text.substr(0, kMaxQuotedChars)), "'...");
}

absl::Status Invalid(absl::string_view where, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", problem));
}

std::string CellPath(size_t index) { return absl::StrCat("cells[", index, "]"); }


// A SAX handler that accepts everything and keeps the parser's error message.
struct ParseErrorRecorder {
  std::string message;

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const Json::string_t&) { return true; }
  bool string(Json::string_t&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(std::size_t) { return true; }
  bool key(Json::string_t&) { return true; }
  bool end_object() { return true; }
  bool start_array(std::size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(std::size_t, const std::string&, const Json::exception& error) {
    message = error.what();
    return false;
  }
};

// Parses with nlohmann, for what simdjson refuses: says what is wrong and where or, for the
// few documents only nlohmann takes (integers beyond 64 bits, read as doubles), parses them.
absl::StatusOr<Json> ParseJsonSlowly(absl::string_view bytes) {
  if (const size_t offset = FindExcessiveJsonNesting(bytes, kMaxNestingDepth);
      offset != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("ipynb nests arrays and objects deeper than ",
                                                   kMaxNestingDepth, " (at byte ", offset, ")"));
  }
  Json json = Json::parse(bytes.begin(), bytes.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) return json;
  // Parse again to learn where and why it failed ("parse error at line 3, column 5: ...").
  ParseErrorRecorder recorder;
  Json::sax_parse(bytes.begin(), bytes.end(), &recorder);
  std::string message = std::move(recorder.message);
  if (const size_t end_of_id = message.find("] ");
      message.rfind("[json.exception.", 0) == 0 && end_of_id != std::string::npos) {
    message.erase(0, end_of_id + 2);
  }
  if (message.empty()) message = "parse error";
  return absl::InvalidArgumentError(absl::StrCat("ipynb is not valid JSON: ", message));
}

uint64_t RandomSeed() {
  try {
    std::random_device device;  // getrandom(2) on Linux
    return (uint64_t{device()} << 32) ^ device();
  } catch (...) {
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
}

// Hands out nbformat-style random cell ids (8 hex digits) not in `used`, and adds them to it.
class CellIdGenerator {
 public:
  explicit CellIdGenerator(std::unordered_set<std::string>& used)
      : used_(used), random_(RandomSeed()) {}

  std::string Next() {
    static constexpr char kHexDigits[] = "0123456789abcdef";
    while (true) {
      uint64_t bits = random_();
      std::string id(kGeneratedIdHexDigits, '0');
      for (char& c : id) {
        c = kHexDigits[bits & 0xf];
        bits >>= 4;
      }
      if (used_.insert(id).second) return id;
    }
  }

 private:
  std::unordered_set<std::string>& used_;
  std::mt19937_64 random_;
};

template <typename View>
absl::StatusOr<int> ReadFormatVersion(const View& root) {
  const std::optional<View> major = root.Field("nbformat");
  if (!major.has_value()) return Invalid("nbformat", "missing (not a Jupyter notebook?)");
  const std::optional<int64_t> major_value = major->int64();
  if (!major_value.has_value()) return Invalid("nbformat", "must be an integer");
  if (*major_value != 4) {
    return Invalid(
        "nbformat",
        absl::StrCat("only nbformat 4 notebooks are supported, this one is nbformat ", *major_value,
                     " (convert it with `jupyter nbconvert --to notebook`)"));
  }
  const std::optional<View> minor = root.Field("nbformat_minor");
  if (!minor.has_value()) return Invalid("nbformat_minor", "missing");
  const std::optional<int64_t> minor_value = minor->int64();
  if (!minor_value.has_value() || *minor_value < 0 ||
      *minor_value > std::numeric_limits<int>::max()) {
    return Invalid("nbformat_minor", "must be a non-negative integer");
  }
  return static_cast<int>(*minor_value);
}

// The `metadata` of a notebook or cell as compact JSON object text; `{}` if it has none.
template <typename View>
absl::StatusOr<std::string> ReadMetadata(const View& object, absl::string_view where) {
  const std::optional<View> metadata = object.Field("metadata");
  if (!metadata.has_value()) return std::string("{}");
  if (!metadata->is_object()) return Invalid(where, "must be an object");
  return metadata->Dump();
}

template <typename View>
absl::StatusOr<std::string> ReadSource(const View& cell, const std::string& where) {
  const std::optional<View> source = cell.Field("source");
  if (!source.has_value()) return Invalid(where, "missing 'source'");
  if (source->is_string()) return std::string(source->string());
  if (!source->is_array()) {
    return Invalid(where + ".source", "must be a string or a list of strings");
  }
  std::string text;
  absl::Status status = source->ForEachElement([&](size_t i, const View& line) {
    if (!line.is_string()) {
      return Invalid(absl::StrCat(where, ".source[", i, "]"), "must be a string");
    }
    absl::StrAppend(&text, line.string());
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return text;
}

template <typename View>
absl::StatusOr<v1::CellType> ReadCellType(const View& cell, const std::string& where) {
  const std::optional<View> type = cell.Field("cell_type");
  if (!type.has_value()) return Invalid(where, "missing 'cell_type'");
  if (!type->is_string()) return Invalid(where + ".cell_type", "must be a string");
  const absl::string_view name = type->string();
  if (name == "code") return v1::CELL_TYPE_CODE;
  if (name == "markdown") return v1::CELL_TYPE_MARKDOWN;
  if (name == "raw") return v1::CELL_TYPE_RAW;
  return Invalid(where + ".cell_type", absl::StrCat("unknown cell_type ", Quote(name),
                                                    " (expected 'code', 'markdown' or 'raw')"));
}

template <typename View>
absl::StatusOr<int32_t> ReadExecutionCount(const View& cell, const std::string& where) {
  const std::optional<View> count = cell.Field("execution_count");
  if (!count.has_value() || count->is_null()) return 0;
  const std::optional<int64_t> value = count->int64();
  if (!value.has_value() || *value < 0 || *value > std::numeric_limits<int32_t>::max()) {
    return Invalid(where + ".execution_count", "must be null or a non-negative 32-bit integer");
  }
  return static_cast<int32_t>(*value);
}

template <typename View>
absl::Status ReadOutputs(const View& cell, const std::string& where, v1::Cell& out) {
  const std::optional<View> outputs = cell.Field("outputs");
  if (!outputs.has_value()) return absl::OkStatus();
  if (!outputs->is_array()) return Invalid(where + ".outputs", "must be a list");
  out.mutable_outputs()->Reserve(static_cast<int>(outputs->size()));
  return outputs->ForEachElement([&](size_t i, const View& item) {
    absl::StatusOr<v1::Output> output = OutputFromNbformat(item);
    if (!output.ok()) {
      return Invalid(absl::StrCat(where, ".outputs[", i, "]"), output.status().message());
    }
    *out.add_outputs() = *std::move(output);
    return absl::OkStatus();
  });
}

// The cell's keys that are not v1::Cell fields, as JSON object text; empty if none. Markdown and
// raw cells have no outputs or execution count: such keys are dropped, not kept.
template <typename View>
std::string ReadExtras(const View& cell) {
  Json extras = Json::object();
  cell.ForEachMember([&extras](absl::string_view key, const View& value) {
        bool is_field = false;
        for (const char* field : kCellFields) is_field = is_field || key == field;
        if (!is_field) extras[std::string(key)] = value.ToNlohmann();
        return absl::OkStatus();
      })
      .IgnoreError();
  return extras.empty() ? std::string() : Dump(extras);
}

// Takes the cell's `id` into `out.cell_id` if it is valid and unused. Otherwise leaves
// `out.cell_id` empty for a fresh id to be generated, or, when `strict` (nbformat >= 4.5),
// fails.
template <typename View>
absl::Status ReadCellId(const View& cell, const std::string& where, bool strict,
                        std::unordered_map<std::string, size_t>& first_use, size_t index,
                        v1::Cell& out) {
  const std::optional<View> id = cell.Field("id");
  if (!id.has_value()) return absl::OkStatus();  // nbformat generates missing ids too
  if (!id->is_string()) {
    return strict ? Invalid(where + ".id", "must be a string") : absl::OkStatus();
  }
  const std::string value(id->string());
  if (!IsValidCellId(value)) {
    if (!strict) return absl::OkStatus();
    return Invalid(where + ".id", absl::StrCat("invalid cell id ", Quote(value),
                                               ": must be 1-64 characters of [a-zA-Z0-9-_]"));
  }
  const auto [previous, inserted] = first_use.emplace(value, index);
  if (!inserted) {
    if (!strict) return absl::OkStatus();
    return Invalid(where + ".id", absl::StrCat("duplicate cell id ", Quote(value), " (also ",
                                               CellPath(previous->second), ".id)"));
  }
  out.set_cell_id(value);
  return absl::OkStatus();
}

template <typename View>
absl::Status ReadCell(const View& cell, size_t index, bool strict,
                      std::unordered_map<std::string, size_t>& first_use, v1::Cell& out,
                      std::string& extras) {
  const std::string where = CellPath(index);
  if (!cell.is_object()) return Invalid(where, "must be an object");
  out.set_index(static_cast<int32_t>(index));
  absl::StatusOr<v1::CellType> type = ReadCellType(cell, where);
  if (!type.ok()) return type.status();
  out.set_cell_type(*type);
  if (absl::Status status = ReadCellId(cell, where, strict, first_use, index, out); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::string> source = ReadSource(cell, where);
  if (!source.ok()) return source.status();
  out.set_source(*std::move(source));
  absl::StatusOr<std::string> metadata = ReadMetadata(cell, where + ".metadata");
  if (!metadata.ok()) return metadata.status();
  out.set_metadata(*std::move(metadata));
  out.set_state(v1::CELL_STATE_NEW);
  if (*type == v1::CELL_TYPE_CODE) {
    absl::StatusOr<int32_t> count = ReadExecutionCount(cell, where);
    if (!count.ok()) return count.status();
    out.set_execution_count(*count);
    if (absl::Status status = ReadOutputs(cell, where, out); !status.ok()) return status;
    if (out.execution_count() != 0 || out.outputs_size() != 0) out.set_state(v1::CELL_STATE_STALE);
  }
  extras = ReadExtras(cell);
  return absl::OkStatus();
}

// Reads a parsed notebook file (see ParseIpynb).
template <typename View>
absl::StatusOr<IpynbNotebook> ReadNotebook(const View& root) {
  if (!root.is_object()) return Invalid("ipynb", "must be a JSON object (a notebook)");
  IpynbNotebook notebook;
  absl::StatusOr<int> minor = ReadFormatVersion(root);
  if (!minor.ok()) return minor.status();
  notebook.nbformat_minor = *minor;
  absl::StatusOr<std::string> metadata = ReadMetadata(root, "metadata");
  if (!metadata.ok()) return metadata.status();
  notebook.metadata_json = *std::move(metadata);

  const std::optional<View> cells = root.Field("cells");
  if (!cells.has_value()) return Invalid("cells", "missing");
  if (!cells->is_array()) return Invalid("cells", "must be a list");
  if (cells->size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return Invalid("cells", "too many cells");
  }
  // Cell ids are checked strictly from 4.5 on, when they entered the format.
  const bool strict_ids = notebook.nbformat_minor >= 5;
  std::unordered_map<std::string, size_t> first_use;
  notebook.cells.resize(cells->size());
  notebook.cell_extras.resize(cells->size());
  absl::Status status = cells->ForEachElement([&](size_t i, const View& cell) {
    return ReadCell(cell, i, strict_ids, first_use, notebook.cells[i], notebook.cell_extras[i]);
  });
  if (!status.ok()) return status;
  // Fresh ids for cells without a (usable) one, unique among all the file's ids.
  std::unordered_set<std::string> used;
  for (const auto& [id, index] : first_use) used.insert(id);
  CellIdGenerator generator(used);
  for (v1::Cell& cell : notebook.cells) {
    if (cell.cell_id().empty()) cell.set_cell_id(generator.Next());
  }
  return notebook;
}

// Parses JSON object text; `{}` for empty, malformed, too deep or non-object text.
Json ObjectOrEmpty(const std::string& text) {
  if (text.empty() || FindExcessiveJsonNesting(text, kMaxNestingDepth) != absl::string_view::npos) {
    return Json::object();
  }
  Json json = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return Json::object();  // also when discarded
  return json;
}


const char* CellTypeName(v1::CellType type) {
  switch (type) {
    case v1::CELL_TYPE_MARKDOWN:
      return "markdown";
    case v1::CELL_TYPE_RAW:
      return "raw";
    default:
      return "code";
  }
}

Json CellToJson(const v1::Cell& cell, const std::string& extras, const std::string& id) {
  Json json = ObjectOrEmpty(extras);
  json["id"] = id;
  json["cell_type"] = CellTypeName(cell.cell_type());
  json["metadata"] = ObjectOrEmpty(cell.metadata());
  json["source"] = NbformatMultiline(cell.source());
  if (cell.cell_type() == v1::CELL_TYPE_MARKDOWN || cell.cell_type() == v1::CELL_TYPE_RAW) {
    json.erase("outputs");
    json.erase("execution_count");
    return json;
  }
  json["execution_count"] = cell.execution_count() > 0 ? Json(cell.execution_count()) : Json();
  Json outputs = Json::array();
  for (const v1::Output& output : cell.outputs()) outputs.push_back(OutputToNbformat(output));
  json["outputs"] = std::move(outputs);
  return json;
}

// simdjson's parser keeps its buffers from one parse to the next. Reusing one spares an import
// the first touch of several times the file's size in fresh memory (the padded copy, the
// structural indexes, the tape, the strings): a good part of the parse's time. One parser is
// kept, for files up to kReusedParserMaxBytes, so what stays allocated is bounded; a bigger
// file, or a second import at the same time, gets a parser of its own.
constexpr size_t kReusedParserMaxBytes = size_t{4} << 20;
constexpr size_t kParserCapacityStep = size_t{1} << 20;

class ReusedParser {
 public:
  // A parser with room for `bytes` bytes: the kept one when the file is small enough and no
  // other import has it. Returns it to be kept when it goes.
  explicit ReusedParser(size_t bytes) {
    if (bytes <= kReusedParserMaxBytes) {
      Slot& slot = TheSlot();
      absl::MutexLock lock(&slot.mutex);
      parser_ = std::move(slot.parser);
      keep_ = true;
    }
    if (parser_ == nullptr) parser_ = std::make_unique<simdjson::dom::parser>();
    // allocate() reallocates on any change of capacity: grow only, in whole steps.
    if (parser_->capacity() < bytes || parser_->max_depth() != kMaxNestingDepth) {
      const size_t capacity =
          keep_ ? (bytes + kParserCapacityStep - 1) / kParserCapacityStep * kParserCapacityStep
                : bytes;
      allocated_ = parser_->allocate(capacity, kMaxNestingDepth) == simdjson::SUCCESS;
    }
  }
  ~ReusedParser() {
    if (!keep_ || !allocated_) return;
    Slot& slot = TheSlot();
    absl::MutexLock lock(&slot.mutex);
    if (slot.parser == nullptr) slot.parser = std::move(parser_);
  }
  ReusedParser(const ReusedParser&) = delete;
  ReusedParser& operator=(const ReusedParser&) = delete;

  // Null when the buffers could not be allocated.
  simdjson::dom::parser* get() { return allocated_ ? parser_.get() : nullptr; }

 private:
  struct Slot {
    absl::Mutex mutex;
    std::unique_ptr<simdjson::dom::parser> parser ABSL_GUARDED_BY(mutex);
  };
  static Slot& TheSlot() {
    static Slot* const slot = new Slot;  // never destroyed: imports may run at exit
    return *slot;
  }

  std::unique_ptr<simdjson::dom::parser> parser_;
  bool keep_ = false;
  bool allocated_ = true;
};

}  // namespace

bool IsValidCellId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxCellIdLength) return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<IpynbNotebook> ParseIpynb(absl::string_view bytes, int64_t max_bytes) {
  if (max_bytes < 0 || static_cast<uint64_t>(bytes.size()) > static_cast<uint64_t>(max_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ipynb is ", bytes.size(), " bytes, more than the limit of ", max_bytes));
  }
  // simdjson first: several times faster, and its views are read with no DOM to build or
  // free. Anything it refuses goes to nlohmann, for its error messages (or its bigger numbers).
  {
    ReusedParser parser(bytes.size());
    simdjson::dom::element root;
    if (parser.get() != nullptr &&
        parser.get()->parse(bytes.data(), bytes.size()).get(root) == simdjson::SUCCESS) {
      return ReadNotebook(SimdjsonView(root));
    }
  }
  absl::StatusOr<Json> root = ParseJsonSlowly(bytes);
  if (!root.ok()) return root.status();
  return ReadNotebook(NlohmannJsonView(*root));
}

std::string ExportIpynb(const IpynbNotebook& notebook) {
  // Every cell id must be valid and unique in a 4.5 file. The session guarantees it; should a
  // cell break the rule anyway, it gets a fresh id rather than make the file invalid.
  std::unordered_set<std::string> used;
  std::vector<bool> keep_id(notebook.cells.size(), false);
  for (size_t i = 0; i < notebook.cells.size(); ++i) {
    const std::string& id = notebook.cells[i].cell_id();
    keep_id[i] = IsValidCellId(id) && used.insert(id).second;
  }
  CellIdGenerator generator(used);

  static const std::string kNoExtras;
  Json cells = Json::array();
  for (size_t i = 0; i < notebook.cells.size(); ++i) {
    const v1::Cell& cell = notebook.cells[i];
    const std::string& extras =
        i < notebook.cell_extras.size() ? notebook.cell_extras[i] : kNoExtras;
    cells.push_back(CellToJson(cell, extras, keep_id[i] ? cell.cell_id() : generator.Next()));
  }
  Json root = Json::object();
  root["cells"] = std::move(cells);
  root["metadata"] = ObjectOrEmpty(notebook.metadata_json);
  root["nbformat"] = 4;
  root["nbformat_minor"] = 5;
  std::string bytes = Dump(root, /*indent=*/1);
  bytes.push_back('\n');
  return bytes;
}

}  // namespace cellgate::notebook
