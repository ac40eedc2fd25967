#include "server/session/variable_transfer.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/obs/metrics.h"
#include "server/protocol/message.h"

namespace cellgate::session {
namespace {

// Run in the source: pickles the value into FILE and prints its size and type.
constexpr absl::string_view kExportCode = R"(def _cellgate_transfer_out():
    import os, pickle, sys
    namespace = get_ipython().user_ns
    if NAME_LITERAL not in namespace:
        raise NameError("name %r is not defined" % NAME_LITERAL)
    value = namespace[NAME_LITERAL]
    try:
        with open(FILE_LITERAL, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:
        if os.path.exists(FILE_LITERAL):
            os.unlink(FILE_LITERAL)
        raise
    kind = type(value)
    sys.stdout.write("%d %s.%s\n" % (os.path.getsize(FILE_LITERAL), kind.__module__,
                                     kind.__qualname__))
try:
    _cellgate_transfer_out()
finally:
    del _cellgate_transfer_out
)";

// Run in the target: unpickles FILE into AS_NAME and removes the file.
constexpr absl::string_view kImportCode = R"(def _cellgate_transfer_in():
    import os, pickle
    try:
        with open(FILE_LITERAL, "rb") as f:
            value = pickle.load(f)
    finally:
        os.unlink(FILE_LITERAL)
    get_ipython().user_ns[AS_NAME_LITERAL] = value
try:
    _cellgate_transfer_in()
finally:
    del _cellgate_transfer_in
)";

std::string Quoted(absl::string_view text) { return absl::StrCat("'", text, "'"); }

ExecutionOptions OptionsFor(absl::Duration timeout) {
  ExecutionOptions options;
  options.timeout = timeout;
  options.on_timeout = v1::ON_TIMEOUT_INTERRUPT;
  options.respond_by = absl::Now() + timeout;  // queued time counts too
  return options;
}

absl::Status CheckPython(const KernelSession& session, absl::string_view field) {
  if (!absl::EqualsIgnoreCase(session.language(), "python")) {
    return absl::FailedPreconditionError(
        absl::StrCat(field, ": kernel ", session.kernel_id(), " runs ",
                     session.language().empty() ? "an unknown language" : session.language(),
                     "; variables move between Python kernels only"));
  }
  return absl::OkStatus();
}

// What an execution's failure means for the transfer.
absl::Status ExecutionFailure(const v1::ExecutionResult& result, const KernelSession& kernel,
                              absl::Duration timeout, absl::string_view doing) {
  switch (result.status()) {
    case v1::EXECUTION_STATUS_TIMEOUT:
      return absl::DeadlineExceededError(absl::StrCat(
          "kernel ", kernel.kernel_id(), " did not finish ", doing, " within ",
          absl::FormatDuration(timeout), " (busy with other executions, or slow); nothing was "
          "transferred"));
    case v1::EXECUTION_STATUS_ERROR:
      return absl::FailedPreconditionError(absl::StrCat("kernel ", kernel.kernel_id(),
                                                        " failed ", doing, ": ",
                                                        result.error().ename(), ": ",
                                                        result.error().evalue()));
    default:
      return absl::FailedPreconditionError(absl::StrCat(
          "kernel ", kernel.kernel_id(), " did not finish ", doing, ": ",
          obs::Metrics::EnumLabel(v1::ExecutionStatus_Name(result.status()),
                                  "EXECUTION_STATUS_"),
          result.status_detail().empty() ? "" : absl::StrCat(" (", result.status_detail(), ")")));
  }
}

struct Transfer {
  std::shared_ptr<KernelSession> from;
  std::shared_ptr<KernelSession> to;
  VariableTransfer request;
  std::string file;
  v1::TransferVariableResponse response;
  TransferCallback done;

  void Fail(absl::Status status) {
    from->workspace().RemoveGatewayFile(file);
    to->workspace().RemoveGatewayFile(file);
    std::move(done)(std::move(status));
  }
};

void Import(std::shared_ptr<Transfer> transfer) {
  const std::string code = absl::StrReplaceAll(
      kImportCode, {{"AS_NAME_LITERAL", Quoted(transfer->request.as_name)},
                    {"FILE_LITERAL", Quoted(transfer->file)}});
  absl::Status status = transfer->to->Execute(
      code, OptionsFor(transfer->request.timeout), [transfer](v1::ExecutionResult result) {
        transfer->response.set_to_execution_id(result.execution_id());
        if (result.status() != v1::EXECUTION_STATUS_OK) {
          transfer->Fail(ExecutionFailure(result, *transfer->to, transfer->request.timeout,
                                          "unpickling the value"));
          return;
        }
        std::move(transfer->done)(std::move(transfer->response));
      });
  if (!status.ok()) transfer->Fail(status);
}

void OnExported(std::shared_ptr<Transfer> transfer, const v1::ExecutionResult& result) {
  transfer->response.set_from_execution_id(result.execution_id());
  if (result.status() == v1::EXECUTION_STATUS_ERROR && result.error().ename() == "NameError" &&
      result.error().evalue() ==
          absl::StrCat("name ", Quoted(transfer->request.name), " is not defined")) {
    transfer->Fail(absl::NotFoundError(absl::StrCat("name: ", Quoted(transfer->request.name),
                                                    " is not defined in kernel ",
                                                    transfer->from->kernel_id())));
    return;
  }
  if (result.status() != v1::EXECUTION_STATUS_OK) {
    transfer->Fail(ExecutionFailure(result, *transfer->from, transfer->request.timeout,
                                    absl::StrCat("pickling ", transfer->request.name)));
    return;
  }
  // "<size> <module>.<type>\n", the last line it printed.
  const std::vector<absl::string_view> lines =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(result.text()), '\n');
  const std::vector<absl::string_view> fields =
      absl::StrSplit(lines.back(), absl::MaxSplits(' ', 1));
  int64_t size = 0;
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &size)) {
    transfer->Fail(absl::InternalError(
        absl::StrCat("unexpected answer from kernel ", transfer->from->kernel_id(), ": ",
                     result.text().substr(0, 200))));
    return;
  }
  transfer->response.set_type(std::string(absl::StripPrefix(fields[1], "builtins.")));
  if (transfer->request.max_bytes > 0 && size > transfer->request.max_bytes) {
    transfer->Fail(absl::ResourceExhaustedError(absl::StrCat(
        "name: ", transfer->request.name, " pickles to ", size, " bytes, over the cap of ",
        transfer->request.max_bytes, " (max_transfer_bytes)")));
    return;
  }
  absl::StatusOr<int64_t> moved =
      transfer->to->workspace().TakeGatewayFile(transfer->from->workspace(), transfer->file);
  if (!moved.ok()) {
    transfer->Fail(moved.status());
    return;
  }
  transfer->response.set_size(*moved);
  Import(std::move(transfer));
}

}  // namespace

void TransferVariable(std::shared_ptr<KernelSession> from, std::shared_ptr<KernelSession> to,
                      VariableTransfer request, TransferCallback done) {
  if (absl::Status status = CheckPython(*from, "from_kernel_id"); !status.ok()) {
    std::move(done)(status);
    return;
  }
  if (absl::Status status = CheckPython(*to, "to_kernel_id"); !status.ok()) {
    std::move(done)(status);
    return;
  }
  auto transfer = std::make_shared<Transfer>();
  transfer->from = std::move(from);
  transfer->to = std::move(to);
  transfer->request = std::move(request);
  transfer->file = absl::StrCat(".cellgate-transfer-", protocol::NewMessageId(), ".pickle");
  transfer->done = std::move(done);
  const std::string code =
      absl::StrReplaceAll(kExportCode, {{"NAME_LITERAL", Quoted(transfer->request.name)},
                                        {"FILE_LITERAL", Quoted(transfer->file)}});
  absl::Status status = transfer->from->Execute(
      code, OptionsFor(transfer->request.timeout),
      [transfer](v1::ExecutionResult result) { OnExported(transfer, result); });
  if (!status.ok()) transfer->Fail(status);
}

}  // namespace cellgate::session
