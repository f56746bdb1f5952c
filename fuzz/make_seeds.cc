// Writes the seed corpus for wire_decoder_fuzz: valid request payloads (call id, then fields) for
// the calls that reach the token, made with the real encoder. Session 0 and 1 are the fuzz
// harness's logged-in sessions; objects 100..104 are its fake token's objects.
//
//   make_fuzz_seeds DIRECTORY
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "src/common/cryptoki/cryptoki.h"
#include "src/common/wire/calls.h"
#include "src/common/wire/codec.h"

namespace wire = dojang::wire;

namespace {

std::string g_directory;
constexpr std::uint8_t kSeparator[] = {0xd0, 0x7a, 0x4e, 0x61};

template <wire::CallId id>
wire::Bytes payload(const typename wire::Call<id>::Request& request) {
  wire::Bytes frame;
  wire::encodeRequest<id>(request, frame);
  return wire::Bytes(frame.begin() + wire::kFrameHeaderBytes, frame.end());
}

void save(const std::string& name, const wire::Bytes& bytes) {
  std::ofstream out(g_directory + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::cerr << "cannot write " << name << "\n";
    std::exit(1);
  }
}

wire::Bytes ulongBytes(CK_ULONG value) {
  wire::Bytes bytes(sizeof value);
  std::memcpy(bytes.data(), &value, sizeof value);
  return bytes;
}

wire::Mechanism mechanism(CK_MECHANISM_TYPE type) {
  wire::Mechanism out;
  out.type = type;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_fuzz_seeds DIRECTORY\n";
    return 2;
  }
  g_directory = argv[1];
  using wire::CallId;

  wire::HelloRequest hello;
  hello.clientId.assign(16, 7);
  hello.program = "seed";
  save("hello", payload<CallId::Hello>(hello));
  save("get-slot-list", payload<CallId::GetSlotList>({true}));
  save("get-token-info", payload<CallId::GetTokenInfo>({1}));
  save("get-mechanism-list", payload<CallId::GetMechanismList>({1}));
  save("wait-for-slot-event", payload<CallId::WaitForSlotEvent>({true}));
  save("open-session", payload<CallId::OpenSession>({1, CKF_SERIAL_SESSION | CKF_RW_SESSION}));
  save("get-session-info", payload<CallId::GetSessionInfo>({1}));
  save("login", payload<CallId::Login>({1, CKU_USER, true, {'1', '2', '3', '4'}}));
  save("logout", payload<CallId::Logout>({0}));
  save("find-private-keys", payload<CallId::FindObjects>({0, {{CKA_CLASS, ulongBytes(CKO_PRIVATE_KEY)}}}));
  save("get-attribute-value",
       payload<CallId::GetAttributeValue>({0, 100, {CKA_CLASS, CKA_LABEL, CKA_VALUE, CKA_KEY_TYPE}}));
  save("set-attribute-value", payload<CallId::SetAttributeValue>({0, 104, {{CKA_LABEL, {'x'}}}}));
  save("create-object", payload<CallId::CreateObject>(
                            {0, {{CKA_CLASS, ulongBytes(CKO_DATA)}, {CKA_LABEL, {'n', 'e', 'w'}}}}));
  save("destroy-object", payload<CallId::DestroyObject>({0, 104}));

  wire::GenerateKeyPairRequest generate;
  generate.session = 0;
  generate.mechanism = mechanism(CKM_EC_KEY_PAIR_GEN);
  generate.publicTemplate = {{CKA_EC_PARAMS, {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}}};
  generate.privateTemplate = {{CKA_SIGN, {CK_TRUE}}};
  save("generate-key-pair", payload<CallId::GenerateKeyPair>(generate));

  save("check-operation",
       payload<CallId::CheckOperation>({0, wire::Operation::Sign, mechanism(CKM_ECDSA), 100}));
  save("sign-ecdsa", payload<CallId::Sign>({0, mechanism(CKM_ECDSA), 100, wire::Bytes(32, 0xab)}));
  wire::Mechanism pss = mechanism(CKM_SHA256_RSA_PKCS_PSS);
  pss.paramsKind = wire::MechanismParams::Pss;
  pss.hashAlg = CKM_SHA256;
  pss.mgf = CKG_MGF1_SHA256;
  pss.saltOrSource = 32;
  save("sign-pss", payload<CallId::Sign>({0, pss, 102, {'m', 's', 'g'}}));
  save("verify", payload<CallId::Verify>({0, mechanism(CKM_ECDSA), 101, wire::Bytes(32, 0xab), wire::Bytes(40, 1)}));
  wire::Mechanism oaep = mechanism(CKM_RSA_PKCS_OAEP);
  oaep.paramsKind = wire::MechanismParams::Oaep;
  oaep.hashAlg = CKM_SHA256;
  oaep.mgf = CKG_MGF1_SHA256;
  oaep.saltOrSource = CKZ_DATA_SPECIFIED;
  save("decrypt-oaep", payload<CallId::Decrypt>({0, oaep, 102, wire::Bytes(256, 3)}));
  save("digest", payload<CallId::Digest>({0, mechanism(CKM_SHA256), {'a', 'b', 'c'}}));
  save("generate-random", payload<CallId::GenerateRandom>({0, 16}));
  save("daemon-status", payload<CallId::DaemonStatus>({}));
  save("close-session", payload<CallId::CloseSession>({1}));

  // A sequence: create an object, read it, close the session it lives in.
  auto sequence = payload<CallId::CreateObject>({0, {{CKA_CLASS, ulongBytes(CKO_DATA)}, {CKA_TOKEN, {CK_TRUE}}}});
  for (const auto& next : {payload<CallId::FindObjects>({0, {}}), payload<CallId::CloseSession>({0}),
                           payload<CallId::Sign>({1, mechanism(CKM_ECDSA), 100, wire::Bytes(32, 1)})}) {
    sequence.insert(sequence.end(), std::begin(kSeparator), std::end(kSeparator));
    sequence.insert(sequence.end(), next.begin(), next.end());
  }
  save("sequence-create-find-close-sign", sequence);
  return 0;
}
