// Read-only bytes of a file, memory-mapped (POSIX mmap), or of a buffer held in memory.
//
//   mapped_file f("model.gguf");          maps the whole file read-only; throws errc::io_error naming
//                                         the path when it cannot be opened, is not a regular file, or
//                                         cannot be mapped
//   mapped_file::from_bytes(std::move(v)) owns an in-memory copy (tests, fuzzers, downloaded buffers)
//   mapped_file::borrow(span)             views caller-owned bytes (they must outlive the object)
//   f.data()  std::span<const std::byte>  the bytes (empty for an empty file)
//   f.size(), f.path()                    path() is what error messages should name
//
// Move-only; unmapping happens in the destructor. A mapping stays valid even if the file is renamed or
// unlinked meanwhile, but truncating the file under a live mapping makes reads past the new end fault
// (SIGBUS): that is POSIX, and the price of not copying multi-gigabyte checkpoints.
// Mapped data starts on a page boundary and owned buffers on an allocator boundary (>= 16 bytes), so
// an offset that is a multiple of 4 gives a 4-byte aligned address.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mixprec/error.hpp"

namespace mixprec {

class mapped_file {
 public:
  mapped_file() = default;

  // Maps `path` read-only; throws errc::io_error naming the path.
  explicit mapped_file(std::string path) : path_(std::move(path)) {
    // O_NONBLOCK: a FIFO would block open() until a writer came; it is refused below instead.
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail("cannot open");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      errno = e;
      fail("cannot stat");
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw error(errc::io_error, "'" + path_ + "' is not a regular file");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size > 0) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        errno = e;
        fail("cannot map");
      }
      map_ = p;
      map_size_ = size;
      bytes_ = {static_cast<const std::byte*>(p), size};
    }
    ::close(fd);  // the mapping keeps the file referenced
  }

  // Owns `bytes`; `name` stands for the path in error messages.
  [[nodiscard]] static mapped_file from_bytes(std::vector<std::byte> bytes, std::string name = "<memory>") {
    mapped_file f;
    f.path_ = std::move(name);
    f.owned_ = std::move(bytes);
    f.bytes_ = {f.owned_.data(), f.owned_.size()};
    return f;
  }

  // Views `bytes` without copying; the caller keeps them alive as long as this object.
  [[nodiscard]] static mapped_file borrow(std::span<const std::byte> bytes, std::string name = "<memory>") {
    mapped_file f;
    f.path_ = std::move(name);
    f.bytes_ = bytes;
    return f;
  }

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { take(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      unmap();
      take(o);
    }
    return *this;
  }
  ~mapped_file() { unmap(); }

  [[nodiscard]] std::span<const std::byte> data() const noexcept { return bytes_; }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw error(errc::io_error, std::string(what) + " '" + path_ + "': " + std::strerror(errno));
  }
  void unmap() noexcept {
    if (map_) ::munmap(map_, map_size_);
    map_ = nullptr;
    map_size_ = 0;
  }
  void take(mapped_file& o) noexcept {
    path_ = std::move(o.path_);
    // A moved vector keeps its heap block, so the span into it stays valid.
    owned_ = std::move(o.owned_);
    bytes_ = o.bytes_;
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    o.bytes_ = {};
  }

  std::string path_;
  std::vector<std::byte> owned_;
  std::span<const std::byte> bytes_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
};

}  // namespace mixprec
