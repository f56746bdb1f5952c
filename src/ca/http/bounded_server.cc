#include "src/ca/http/bounded_server.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dojang::ca {
namespace {

using Clock = std::chrono::steady_clock;

// Set by the post-routing handler, read by the connection loop: both run on the worker thread
// that serves the connection, inside process_request.
thread_local bool t_closeAfterResponse = false;

// httplib's own pool queues accepted sockets without limit. Here the accept loop waits once
// every worker is busy and `waiting` connections are queued, so a flood fills the kernel's listen
// backlog (and is then refused) instead of the CA's memory and file descriptors.
class BoundedWorkerPool final : public httplib::TaskQueue {
 public:
  BoundedWorkerPool(size_t workers, size_t waiting) : m_maxWaiting(std::max<size_t>(waiting, 1)) {
    for (size_t i = 0; i < std::max<size_t>(workers, 1); ++i) {
      m_workers.emplace_back([this]() { work(); });
    }
  }

  ~BoundedWorkerPool() override { shutdown(); }
  BoundedWorkerPool(const BoundedWorkerPool&) = delete;
  BoundedWorkerPool& operator=(const BoundedWorkerPool&) = delete;

  void enqueue(std::function<void()> job) override {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_spaceFree.wait(lock, [this]() { return m_jobs.size() < m_maxWaiting || m_stopping; });
    // Even when stopping the job runs: it owns the accepted socket and closes it.
    m_jobs.push_back(std::move(job));
    m_jobReady.notify_one();
  }

  // Runs what is queued (each job closes its socket), then joins the workers.
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stopping = true;
    }
    m_jobReady.notify_all();
    m_spaceFree.notify_all();
    for (std::thread& worker : m_workers) {
      if (worker.joinable()) {
        worker.join();
      }
    }
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_jobReady.wait(lock, [this]() { return !m_jobs.empty() || m_stopping; });
        if (m_jobs.empty()) {
          return;
        }
        job = std::move(m_jobs.front());
        m_jobs.pop_front();
      }
      m_spaceFree.notify_one();
      job();
    }
  }

  const size_t m_maxWaiting;
  std::mutex m_mutex;
  std::condition_variable m_jobReady;
  std::condition_variable m_spaceFree;
  std::deque<std::function<void()>> m_jobs;
  bool m_stopping = false;
  std::vector<std::thread> m_workers;
};

// httplib's socket stream gives every read its own timeout, so a client that sends one byte
// just before each timeout holds a worker for as long as it likes. This one also ends a request
// that has not fully arrived by its deadline.
class DeadlineStream final : public httplib::Stream {
 public:
  DeadlineStream(socket_t socket, const ConnectionLimits& limits) : m_socket(socket), m_limits(limits) {}

  // Waits up to `patience` for the first byte of a request, then starts its deadline.
  bool awaitRequest(std::chrono::milliseconds patience) {
    if (m_bufferStart == m_bufferEnd && !waitFor(POLLIN, patience)) {
      return false;
    }
    m_deadline = Clock::now() + m_limits.requestDeadline;
    return true;
  }

  bool is_readable() const override {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(m_deadline - Clock::now());
    return left.count() > 0 && waitFor(POLLIN, std::min(left, m_limits.idleTimeout));
  }

  bool is_writable() const override { return waitFor(POLLOUT, m_limits.writeTimeout); }

  ssize_t read(char* destination, size_t size) override {
    if (m_bufferStart == m_bufferEnd) {
      if (!is_readable()) {
        return -1;
      }
      const ssize_t received = receive(m_buffer, sizeof m_buffer);
      if (received <= 0) {
        return received;
      }
      m_bufferStart = 0;
      m_bufferEnd = static_cast<size_t>(received);
    }
    const size_t count = std::min(size, m_bufferEnd - m_bufferStart);
    std::memcpy(destination, m_buffer + m_bufferStart, count);
    m_bufferStart += count;
    return static_cast<ssize_t>(count);
  }

  ssize_t write(const char* source, size_t size) override {
    if (!is_writable()) {
      return -1;
    }
    ssize_t sent = 0;
    do {
      sent = ::send(m_socket, source, size, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { describe(getpeername, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { describe(getsockname, ip, port); }
  socket_t socket() const override { return m_socket; }

 private:
  bool waitFor(short events, std::chrono::milliseconds timeout) const {
    pollfd waiting{m_socket, events, 0};
    for (;;) {
      const int ready = ::poll(&waiting, 1, static_cast<int>(timeout.count()));
      if (ready >= 0 || errno != EINTR) {
        return ready > 0;
      }
    }
  }

  ssize_t receive(char* destination, size_t size) {
    ssize_t received = 0;
    do {
      received = ::recv(m_socket, destination, size, 0);
    } while (received < 0 && errno == EINTR);
    return received;
  }

  template <class NameOf>
  void describe(NameOf nameOf, std::string& ip, int& port) const {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    if (nameOf(m_socket, reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
        getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, service, sizeof service,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      ip = host;
      port = std::atoi(service);
    }
  }

  socket_t m_socket;
  const ConnectionLimits& m_limits;
  Clock::time_point m_deadline = Clock::now();
  char m_buffer[4096] = {};
  size_t m_bufferStart = 0;
  size_t m_bufferEnd = 0;
};

template <class Duration>
time_t wholeSeconds(Duration duration) {
  return static_cast<time_t>(std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(duration).count()));
}

}  // namespace

BoundedServer::BoundedServer(const ConnectionLimits& limits) : m_limits(limits) {
  new_task_queue = [this]() { return new BoundedWorkerPool(m_limits.workers, m_limits.waitingConnections); };
  // httplib applies these to each accepted socket (SO_RCVTIMEO/SO_SNDTIMEO) and advertises the
  // keep-alive values in its Keep-Alive header; the loop below enforces the same numbers.
  const auto idle = std::chrono::duration_cast<std::chrono::microseconds>(m_limits.idleTimeout);
  set_read_timeout(static_cast<time_t>(idle.count() / 1000000), static_cast<time_t>(idle.count() % 1000000));
  const auto write = std::chrono::duration_cast<std::chrono::microseconds>(m_limits.writeTimeout);
  set_write_timeout(static_cast<time_t>(write.count() / 1000000), static_cast<time_t>(write.count() % 1000000));
  set_keep_alive_timeout(wholeSeconds(m_limits.keepAliveTimeout));
  set_keep_alive_max_count(std::max<size_t>(m_limits.keepAliveMaxRequests, 1));
}

bool BoundedServer::widenListenBacklog() {
  // Calling listen() again on a listening socket only changes its backlog.
  return svr_sock_ != INVALID_SOCKET && ::listen(svr_sock_, m_limits.listenBacklog) == 0;
}

void BoundedServer::closeAfterThisResponse() { t_closeAfterResponse = true; }

bool BoundedServer::process_and_close_socket(socket_t socket) {
  DeadlineStream stream(socket, m_limits);
  const size_t maxRequests = std::max<size_t>(m_limits.keepAliveMaxRequests, 1);
  bool served = false;
  for (size_t request = 1; request <= maxRequests && svr_sock_ != INVALID_SOCKET; ++request) {
    if (!stream.awaitRequest(request == 1 ? m_limits.idleTimeout : m_limits.keepAliveTimeout)) {
      break;
    }
    t_closeAfterResponse = false;
    bool clientClosing = false;
    served = process_request(stream, request == maxRequests, clientClosing, nullptr);
    if (!served || clientClosing || t_closeAfterResponse) {
      break;
    }
  }
  ::shutdown(socket, SHUT_RDWR);
  ::close(socket);
  return served;
}

}  // namespace dojang::ca
