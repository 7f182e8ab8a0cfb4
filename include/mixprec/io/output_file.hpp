// Writing an output file so that no failure leaves a partial file behind and no output ever replaces
// one of the inputs: the data goes to a temporary file in the target's folder, which is renamed over
// the target only by commit() (an atomic step on POSIX file systems) and removed otherwise.
//
//   mixprec::output_file out("model-q4.gguf", {"model.gguf", "plan.json"});  // refuses an input
//   write_everything(out.stream());
//   out.commit();                       // any exception before this leaves no model-q4.gguf behind
//
// A write that fails (a full disk, an I/O error, a quota or RLIMIT_FSIZE) is errc::output_error naming
// the target and the system's reason (the errno of the first failed write(2) or close(2)): the fault is
// the output's, not any input's.
//
// A process killed by a signal leaves at most its temporary file (".<name>.XXXXXX" beside the target),
// never a truncated target; a signal handler that calls remove_pending_outputs() removes that too:
// remove_pending_outputs_on_signals() installs one for SIGINT, SIGTERM and SIGHUP (every mixprec tool
// calls it first thing in main).
#pragma once

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <span>
#include <streambuf>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mixprec/error.hpp"

namespace mixprec {

namespace detail {

// Temporary files being written, for remove_pending_outputs(): fixed slots of plain C strings, so that
// a signal handler can read them without allocating or locking.
struct pending_output_slots {
  static constexpr int size = 16;
  std::atomic<const char*> path[size] = {};
};
inline pending_output_slots pending_outputs;

inline void register_pending(const char* p) noexcept {
  for (auto& slot : pending_outputs.path) {
    const char* expected = nullptr;
    if (slot.compare_exchange_strong(expected, p)) return;
  }
}
inline void unregister_pending(const char* p) noexcept {
  for (auto& slot : pending_outputs.path) {
    const char* expected = p;
    if (slot.compare_exchange_strong(expected, nullptr)) return;
  }
}

// An output stream buffer over a file descriptor whose failed write(2) throws errc::output_error
// naming `target` and the system's reason ("No space left on device"), rather than leaving a stream
// that went bad somewhere. With badbit in the stream's exceptions(), std::ostream passes the exception
// on to the writer's caller unchanged.
class fd_streambuf : public std::streambuf {
 public:
  fd_streambuf(int fd, std::string target) : fd_(fd), target_(std::move(target)) { setp(buf_, buf_ + sizeof buf_); }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (n <= epptr() - pptr()) {  // fits the buffer
      traits_type::copy(pptr(), s, static_cast<std::size_t>(n));
      pbump(static_cast<int>(n));
      return n;
    }
    if (!drain() || !write_all(s, static_cast<std::size_t>(n))) return 0;  // a large block goes straight to the file
    return n;
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    const bool ok = write_all(pbase(), static_cast<std::size_t>(pptr() - pbase()));
    setp(buf_, buf_ + sizeof buf_);
    return ok;
  }
  bool write_all(const char* p, std::size_t n) {
    while (n > 0) {
      const ::ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0)
        throw error(errc::output_error, "cannot write '" + target_ + "': " + std::strerror(w < 0 ? errno : EIO) + "; nothing was written");
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  int fd_;
  std::string target_;
  char buf_[1 << 16];
};

}  // namespace detail

// Removes every output_file's temporary file still being written. Async-signal-safe (unlink only):
// meant for a SIGINT/SIGTERM handler that then re-raises the signal.
inline void remove_pending_outputs() noexcept {
  for (auto& slot : detail::pending_outputs.path)
    if (const char* p = slot.load()) ::unlink(p);
}

namespace detail {
// Removes the pending outputs, then dies of the signal as it would have without the handler.
inline void remove_pending_outputs_and_reraise(int sig) noexcept {
  remove_pending_outputs();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace detail

// Installs, for SIGINT, SIGTERM and SIGHUP (which mpirun forwards to its ranks), a handler that removes
// every pending temporary output and then dies of the signal as usual. A signal the process ignores
// (nohup's SIGHUP, a background job's SIGINT) stays ignored. SIGXFSZ is ignored, so that a write past
// a file size limit (ulimit -f) fails with EFBIG and is reported (errc::output_error) instead of
// killing the process with its temporary file left behind.
inline void remove_pending_outputs_on_signals() noexcept {
  std::signal(SIGXFSZ, SIG_IGN);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old{};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    std::signal(sig, detail::remove_pending_outputs_and_reraise);
  }
}

// Throws mixprec::error (invalid_argument) if `output` is the same file as one of `inputs`, however it
// is named (another path, a symlink, a hard link); io_error if `output`'s folder does not exist or is
// not writable, or `output` exists and is not a regular file (a folder, a device such as /dev/full, a
// FIFO, a socket: renaming over it would replace it with a file).
inline void check_output_path(const std::string& output, std::span<const std::string> inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path out(output);
  if (output.empty()) throw error(errc::invalid_argument, "output path is empty");
  const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec))
    throw error(errc::io_error, "cannot write '" + output + "': folder '" + dir.string() + "' does not exist");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw error(errc::io_error, "cannot write '" + output + "': folder '" + dir.string() + "' is not writable (" +
                                    std::strerror(errno) + ")");
  const fs::file_status st = fs::status(out, ec);
  if (fs::is_directory(st)) throw error(errc::io_error, "cannot write '" + output + "': it is a folder");
  if (!fs::exists(st)) return;
  if (!fs::is_regular_file(st))
    throw error(errc::io_error, "cannot write '" + output + "': it exists and is not a regular file (a device, FIFO or "
                                                            "socket); outputs are written beside the target and renamed over it");
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    if (fs::equivalent(out, fs::path(in), ec))
      throw error(errc::invalid_argument, "output '" + output + "' is the input file '" + in +
                                              "': choose another output name (the input is never overwritten)");
  }
}

class output_file {
 public:
  // Creates the temporary file beside `path` after check_output_path(path, inputs).
  explicit output_file(std::string path, std::initializer_list<std::string> inputs = {})
      : output_file(std::move(path), std::span<const std::string>(inputs.begin(), inputs.size())) {}
  output_file(std::string path, std::span<const std::string> inputs) : path_(std::move(path)) {
    check_output_path(path_, inputs);
    const std::filesystem::path p(path_);
    const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
    std::string templ = (dir / ("." + p.filename().string() + ".XXXXXX")).string();
    const int fd = ::mkstemp(templ.data());
    if (fd < 0)
      throw error(errc::output_error, "cannot create a temporary file beside '" + path_ + "': " + std::strerror(errno));
    const ::mode_t mask = ::umask(0);  // mkstemp creates 0600; give the file the mode a plain create would
    ::umask(mask);
    (void)::fchmod(fd, 0666 & ~mask);
    fd_ = fd;
    tmp_ = templ;
    detail::register_pending(tmp_.c_str());
    buf_ = std::make_unique<detail::fd_streambuf>(fd_, path_);
    out_.rdbuf(buf_.get());
    out_.clear();
    out_.exceptions(std::ios::badbit);  // a failed write throws the buffer's output_error (see fd_streambuf)
  }
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  ~output_file() {
    if (!committed_) remove_temporary();
  }

  // The stream to write to: sequential writes only (it cannot seek or tell).
  [[nodiscard]] std::ostream& stream() noexcept { return out_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // The temporary file being written (removed unless commit() succeeds).
  [[nodiscard]] const std::string& temporary_path() const noexcept { return tmp_; }

  // Flushes, closes and renames the temporary file to the target; throws mixprec::error (output_error,
  // with the system's reason) if the last writes or the close fail (a full disk, say), in which case the
  // temporary file is removed.
  void commit() {
    try {
      out_.flush();
      if (!out_)  // failbit without a failed write (a seek: the stream cannot seek): bytes may be missing
        throw error(errc::output_error, "cannot write '" + path_ + "': the output stream failed; nothing was written");
    } catch (...) {
      remove_temporary();
      throw;
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {  // NFS and quotas report some failures only here
      const int failure = errno;
      remove_temporary();
      throw error(errc::output_error, "cannot write '" + path_ + "': " + std::strerror(failure) + "; nothing was written");
    }
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) {
      remove_temporary();
      throw error(errc::output_error, "cannot rename the finished file to '" + path_ + "': " + ec.message());
    }
    committed_ = true;
    detail::unregister_pending(tmp_.c_str());
  }

 private:
  void remove_temporary() noexcept {
    if (tmp_.empty()) return;
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
    detail::unregister_pending(tmp_.c_str());
  }

  std::string path_, tmp_;
  int fd_ = -1;
  std::unique_ptr<detail::fd_streambuf> buf_;
  std::ostream out_{nullptr};
  bool committed_ = false;
};

}  // namespace mixprec
