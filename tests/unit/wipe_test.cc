// Imported key bytes leave no copy behind in the application: every heap block freed while a
// C_CreateObject request is encoded and sent is scanned for the key's bytes. This executable
// replaces the global operator new and delete to do that, so it holds nothing else.
#include <malloc.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "pkcs11/frontend.h"
#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/codec.h"
#include "src/common/wire/transport.h"

namespace wire = dojang::wire;

namespace {

constexpr std::uint8_t kMarker[16] = {0xd0, 0x1a, 0x6e, 0x5e, 0xc2, 0xe7, 0x4b, 0x19,
                                      0x9a, 0x33, 0x71, 0x0f, 0xee, 0x42, 0x88, 0x2c};

std::atomic<bool> g_scanning{false};
std::atomic<int> g_unwipedFrees{0};

void checkedFree(void* block) noexcept {
  if (block != nullptr && g_scanning.load(std::memory_order_relaxed) &&
      ::memmem(block, ::malloc_usable_size(block), kMarker, sizeof kMarker) != nullptr) {
    g_unwipedFrees.fetch_add(1, std::memory_order_relaxed);
  }
  std::free(block);
}

void* checkedAllocate(std::size_t size) noexcept { return std::malloc(size == 0 ? 1 : size); }

// An imported secret: the marker, repeated.
wire::Bytes secretValue() {
  wire::Bytes value;
  for (int i = 0; i < 256; ++i) {
    value.insert(value.end(), std::begin(kMarker), std::end(kMarker));
  }
  return value;
}

wire::Bytes ulongBytes(CK_ULONG value) {
  wire::Bytes bytes(sizeof value);
  std::memcpy(bytes.data(), &value, sizeof value);
  return bytes;
}

// Counts the unwiped blocks freed while `action` runs.
template <class Action>
int unwipedFreesDuring(Action&& action) {
  g_unwipedFrees = 0;
  g_scanning = true;
  action();
  g_scanning = false;
  return g_unwipedFrees.load();
}

// Stands in for dojangd on the other end of a memory transport, and wipes what it received.
void serveFakeDaemon(wire::Transport& transport) {
  wire::Bytes payload;
  wire::Bytes frame;
  try {
    for (;;) {
      transport.receive(payload);
      wire::Decoder decoder(payload);
      std::uint16_t id = 0;
      decoder.read(id);
      switch (static_cast<wire::CallId>(id)) {
        case wire::CallId::Hello: {
          wire::HelloReply reply;
          reply.daemonInstance.assign(16, 1);
          wire::encodeReply(CKR_OK, &reply, frame);
          break;
        }
        case wire::CallId::GetSlotList: {
          const wire::GetSlotListReply reply{{1}};
          wire::encodeReply(CKR_OK, &reply, frame);
          break;
        }
        case wire::CallId::OpenSession: {
          const wire::OpenSessionReply reply{5};
          wire::encodeReply(CKR_OK, &reply, frame);
          break;
        }
        case wire::CallId::CreateObject: {
          wire::CreateObjectRequest request;
          decoder.read(request);
          for (auto& attribute : request.templ) {
            wire::wipe(attribute.value);
          }
          const wire::ObjectReply reply{77};
          wire::encodeReply(CKR_OK, &reply, frame);
          break;
        }
        default:
          wire::encodeReply<wire::Empty>(CKR_FUNCTION_NOT_SUPPORTED, nullptr, frame);
      }
      wire::wipe(payload);
      transport.send(frame);
    }
  } catch (const wire::TransportClosed&) {
  }
  wire::wipe(payload);
}

}  // namespace

void* operator new(std::size_t size) {
  if (void* block = checkedAllocate(size)) {
    return block;
  }
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return checkedAllocate(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return checkedAllocate(size); }
void operator delete(void* block) noexcept { checkedFree(block); }
void operator delete[](void* block) noexcept { checkedFree(block); }
void operator delete(void* block, std::size_t) noexcept { checkedFree(block); }
void operator delete[](void* block, std::size_t) noexcept { checkedFree(block); }
void operator delete(void* block, const std::nothrow_t&) noexcept { checkedFree(block); }
void operator delete[](void* block, const std::nothrow_t&) noexcept { checkedFree(block); }

TEST_CASE("the scan finds an unwiped copy", "[wire][wipe]") {
  auto* copy = new wire::Bytes(secretValue());
  CHECK(unwipedFreesDuring([&] { delete copy; }) == 1);
}

TEST_CASE("encoding a CreateObject request leaves no unwiped copy of the key", "[wire][wipe]") {
  wire::CreateObjectRequest request;
  request.session = 1;
  request.templ.push_back({CKA_CLASS, ulongBytes(CKO_SECRET_KEY)});
  request.templ.push_back({CKA_KEY_TYPE, ulongBytes(CKK_GENERIC_SECRET)});
  request.templ.push_back({CKA_VALUE, secretValue()});  // not last: later fields used to regrow the frame
  request.templ.push_back({CKA_LABEL, wire::Bytes(300, 'l')});
  request.templ.push_back({CKA_ID, wire::Bytes(100, 'i')});
  wire::Bytes frame;
  CHECK(unwipedFreesDuring([&] {
          wire::encodeRequest<wire::CallId::CreateObject>(request, frame);
          wire::wipe(frame);
        }) == 0);
  // A reused frame too small for the next request is wiped before it is freed.
  wire::Bytes reused;
  wire::encodeRequest<wire::CallId::CreateObject>(request, reused);
  request.templ.push_back({CKA_SUBJECT, wire::Bytes(5000, 's')});
  CHECK(unwipedFreesDuring([&] {
          wire::encodeRequest<wire::CallId::CreateObject>(request, reused);
          wire::wipe(reused);
        }) == 0);
  for (auto& attribute : request.templ) {
    wire::wipe(attribute.value);
  }
}

TEST_CASE("C_CreateObject through the module leaves no unwiped copy of the key", "[wire][wipe]") {
  std::vector<std::thread> servers;
  std::vector<std::shared_ptr<wire::Transport>> ends;
  {
    dojang::frontend::Frontend frontend(
        [&]() -> std::unique_ptr<wire::Transport> {
          auto [client, server] = wire::makeMemoryTransportPair();
          std::shared_ptr<wire::Transport> end = std::move(server);
          ends.push_back(end);
          servers.emplace_back([end] { serveFakeDaemon(*end); });
          return std::move(client);
        },
        std::chrono::milliseconds(0));
    REQUIRE(frontend.connect() == CKR_OK);
    CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
    REQUIRE(frontend.openSession(1, CKF_SERIAL_SESSION | CKF_RW_SESSION, &session) == CKR_OK);

    CK_OBJECT_CLASS keyClass = CKO_SECRET_KEY;
    CK_KEY_TYPE keyType = CKK_GENERIC_SECRET;
    wire::Bytes value = secretValue();
    char label[] = "imported";
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE templ[] = {{CKA_CLASS, &keyClass, sizeof keyClass},
                            {CKA_KEY_TYPE, &keyType, sizeof keyType},
                            {CKA_VALUE, value.data(), static_cast<CK_ULONG>(value.size())},
                            {CKA_LABEL, label, sizeof label - 1},
                            {CKA_TOKEN, &yes, sizeof yes}};
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    CHECK(unwipedFreesDuring([&] { REQUIRE(frontend.createObject(session, templ, 5, &object) == CKR_OK); }) == 0);
    CHECK(object == 77);
    wire::wipe(value);
    frontend.finalize();
  }
  for (auto& end : ends) {
    end->shutdown();
  }
  for (auto& server : servers) {
    server.join();
  }
}
