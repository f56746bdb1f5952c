#include "drivers/vendor_module/vendor_session.h"

#include <cstring>
#include <string>
#include <utility>

#include "drivers/vendor_module/ck_mechanism.h"
#include "src/common/cryptoki/key_use.h"
#include "src/common/cryptoki/mechanism_key_type.h"

namespace dojang::vendor {
namespace {

// Modules do not write through input pointers, but 2.40 declares them non-const. Empty input
// points at a dummy byte: some modules reject NULL even with length 0.
CK_BYTE_PTR input(std::span<const std::uint8_t> bytes) {
  static CK_BYTE empty[1] = {0};
  return bytes.empty() ? empty : const_cast<CK_BYTE_PTR>(bytes.data());
}

CK_UTF8CHAR_PTR pinPointer(const SecureBytes* pin) {
  if (pin == nullptr) {
    return nullptr;  // protected authentication path
  }
  return input(pin->view());
}

CK_ULONG pinLength(const SecureBytes* pin) { return pin == nullptr ? 0 : static_cast<CK_ULONG>(pin->size()); }

// Runs a single-part call that returns variable-length output: a size query with NULL output
// first (PKCS#11 2.40 section 5.2), then the real call, growing on CKR_BUFFER_TOO_SMALL.
template <class Call>
token::Bytes sizedOutput(std::string_view name, Call&& callWith) {
  // A first guess big enough for any RSA-8192 or EC signature saves the size-query call on the
  // hot path; a token that wants more says CKR_BUFFER_TOO_SMALL and keeps the operation.
  constexpr std::size_t kFirstGuess = 1024;
  token::Bytes output(kFirstGuess);
  for (int attempt = 0; attempt < 4; ++attempt) {
    CK_ULONG length = static_cast<CK_ULONG>(output.size());
    const CK_RV rv = callWith(output.data(), &length);
    if (rv == CKR_BUFFER_TOO_SMALL) {
      output.resize(std::max<std::size_t>(length, output.size() * 2));
      continue;
    }
    checkCkRv(rv, name);
    output.resize(std::min<std::size_t>(length, output.size()));
    return output;
  }
  fail(CKR_GENERAL_ERROR, std::string(name) + " kept asking for a larger buffer");
}

bool isAllowedReadFailure(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

std::optional<CK_ULONG> ulongOf(const token::AttributeRead& read) {
  if (read.status != CKR_OK || read.value.size() != sizeof(CK_ULONG)) {
    return std::nullopt;
  }
  CK_ULONG value = 0;
  std::memcpy(&value, read.value.data(), sizeof value);
  return value;
}

bool trueOf(const token::AttributeRead& read) {
  return read.status == CKR_OK && read.value.size() == sizeof(CK_BBOOL) && read.value[0] == CK_TRUE;
}

}  // namespace

VendorSession::VendorSession(std::shared_ptr<const VendorModule> module, CK_SLOT_ID slot)
    : m_slot(slot), m_session(std::move(module), slot) {}

std::vector<token::ObjectId> VendorSession::findObjects(const token::AttributeList& templ) {
  Template ckTemplate(templ);
  FindOperation find(m_session, ckTemplate);
  const std::vector<CK_OBJECT_HANDLE> handles = find.all();
  return {handles.begin(), handles.end()};
}

// PKCS#11 2.40 section 5.7, C_GetAttributeValue: with NULL pValue the module reports lengths;
// attributes it cannot give are set to CK_UNAVAILABLE_INFORMATION and the call returns
// CKR_ATTRIBUTE_SENSITIVE or CKR_ATTRIBUTE_TYPE_INVALID for the whole template. Which attribute
// had which reason is learnt by asking for those attributes one at a time.
std::vector<token::AttributeRead> VendorSession::readAttributes(token::ObjectId object,
                                                                std::span<const CK_ATTRIBUTE_TYPE> types) {
  std::vector<token::AttributeRead> result(types.size());
  std::vector<std::size_t> pending;
  for (std::size_t i = 0; i < types.size(); ++i) {
    result[i].type = types[i];
    if (isNestedTemplate(types[i])) {
      result[i].status = CKR_ATTRIBUTE_TYPE_INVALID;
    } else {
      pending.push_back(i);
    }
  }

  const CK_SESSION_HANDLE session = m_session.handle();
  auto getAttributes = [&](std::vector<CK_ATTRIBUTE>& attributes) {
    return module().call(&CK_FUNCTION_LIST::C_GetAttributeValue, session, CK_OBJECT_HANDLE{object},
                         attributes.data(), static_cast<CK_ULONG>(attributes.size()));
  };

  CK_RV lastRv = CKR_OK;
  for (int attempt = 0; attempt < 4 && !pending.empty(); ++attempt) {
    // 1. Lengths. Untouched entries keep CK_UNAVAILABLE_INFORMATION (some modules stop at the
    //    first failing attribute) and are asked about one by one below.
    std::vector<CK_ATTRIBUTE> query;
    for (std::size_t index : pending) {
      query.push_back(CK_ATTRIBUTE{types[index], nullptr, CK_UNAVAILABLE_INFORMATION});
    }
    const CK_RV lengthsRv = getAttributes(query);
    if (lengthsRv != CKR_OK && !isAllowedReadFailure(lengthsRv)) {
      throwCkRv(lengthsRv, "C_GetAttributeValue");
    }
    std::vector<std::size_t> known;
    std::vector<CK_ATTRIBUTE> values;
    for (std::size_t k = 0; k < pending.size(); ++k) {
      const std::size_t index = pending[k];
      CK_ULONG length = query[k].ulValueLen;
      if (length == CK_UNAVAILABLE_INFORMATION) {
        CK_RV oneRv = lengthsRv;
        if (pending.size() > 1 || lengthsRv == CKR_OK) {
          std::vector<CK_ATTRIBUTE> one{CK_ATTRIBUTE{types[index], nullptr, CK_UNAVAILABLE_INFORMATION}};
          oneRv = getAttributes(one);
          length = one[0].ulValueLen;
          if (oneRv != CKR_OK && !isAllowedReadFailure(oneRv)) {
            throwCkRv(oneRv, "C_GetAttributeValue");
          }
        }
        if (oneRv != CKR_OK || length == CK_UNAVAILABLE_INFORMATION) {
          result[index].status = oneRv == CKR_OK ? CKR_ATTRIBUTE_TYPE_INVALID : oneRv;
          continue;
        }
      }
      result[index].value.assign(length, 0);
      known.push_back(index);
    }

    // 2. Values, for the attributes that have them.
    for (std::size_t index : known) {
      token::Bytes& buffer = result[index].value;
      values.push_back(CK_ATTRIBUTE{types[index], buffer.empty() ? nullptr : buffer.data(),
                                    static_cast<CK_ULONG>(buffer.size())});
    }
    pending.clear();
    if (values.empty()) {
      break;
    }
    lastRv = getAttributes(values);
    if (lastRv != CKR_OK && lastRv != CKR_BUFFER_TOO_SMALL && !isAllowedReadFailure(lastRv)) {
      throwCkRv(lastRv, "C_GetAttributeValue");
    }
    for (std::size_t k = 0; k < known.size(); ++k) {
      const std::size_t index = known[k];
      const CK_ULONG length = values[k].ulValueLen;
      if (lastRv != CKR_OK && (length == CK_UNAVAILABLE_INFORMATION || length > result[index].value.size())) {
        pending.push_back(index);  // changed under us (grew, or became unreadable): ask again
        continue;
      }
      result[index].value.resize(length);
      result[index].status = CKR_OK;
    }
  }
  if (!pending.empty()) {
    throwCkRv(lastRv, "C_GetAttributeValue");
  }
  return result;
}

void VendorSession::writeAttributes(token::ObjectId object, const token::AttributeList& templ) {
  Template ckTemplate(templ);
  module().check("C_SetAttributeValue", &CK_FUNCTION_LIST::C_SetAttributeValue, m_session.handle(),
                 CK_OBJECT_HANDLE{object}, ckTemplate.data(), ckTemplate.size());
}

token::ObjectId VendorSession::createObject(const token::AttributeList& templ) {
  Template ckTemplate(templ);
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  module().check("C_CreateObject", &CK_FUNCTION_LIST::C_CreateObject, m_session.handle(), ckTemplate.data(),
                 ckTemplate.size(), &handle);
  return handle;
}

void VendorSession::destroyObject(token::ObjectId object) {
  module().check("C_DestroyObject", &CK_FUNCTION_LIST::C_DestroyObject, m_session.handle(),
                 CK_OBJECT_HANDLE{object});
}

token::ObjectId VendorSession::copyObject(token::ObjectId object, const token::AttributeList& templ) {
  Template ckTemplate(templ);
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  module().check("C_CopyObject", &CK_FUNCTION_LIST::C_CopyObject, m_session.handle(), CK_OBJECT_HANDLE{object},
                 ckTemplate.data(), ckTemplate.size(), &handle);
  return handle;
}

CK_ULONG VendorSession::objectSize(token::ObjectId object) {
  CK_ULONG size = CK_UNAVAILABLE_INFORMATION;
  module().check("C_GetObjectSize", &CK_FUNCTION_LIST::C_GetObjectSize, m_session.handle(),
                 CK_OBJECT_HANDLE{object}, &size);
  return size;
}

token::KeyPair VendorSession::generateKeyPair(const token::Mechanism& mechanism,
                                              const token::AttributeList& publicTemplate,
                                              const token::AttributeList& privateTemplate,
                                              const token::KeyGeneration&) {
  // A vendor module picks the place itself and generates under the user's login.
  CkMechanism ckMechanism(mechanism);
  Template publicPart(publicTemplate);
  Template privatePart(privateTemplate);
  CK_OBJECT_HANDLE publicKey = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE privateKey = CK_INVALID_HANDLE;
  module().check("C_GenerateKeyPair", &CK_FUNCTION_LIST::C_GenerateKeyPair, m_session.handle(),
                 ckMechanism.get(), publicPart.data(), publicPart.size(), privatePart.data(),
                 privatePart.size(), &publicKey, &privateKey);
  return token::KeyPair{publicKey, privateKey};
}

// What C_SignInit/C_VerifyInit/C_DecryptInit would reject, learnt from attributes and the
// mechanism list, because PKCS#11 2.40 cannot cancel an operation once it has been started.
void VendorSession::checkKeyOperation(OperationKind kind, const token::Mechanism& mechanism,
                                      token::ObjectId key) {
  const std::optional<CK_ATTRIBUTE_TYPE> usage = keyUsageAttribute(kind);
  if (!usage) {
    fail(CKR_ARGUMENTS_BAD, std::string("checkKeyOperation: no key is used to ") + operationName(kind));
  }

  const std::string keyName = "key " + std::to_string(key);
  std::vector<token::AttributeRead> reads;
  try {
    const CK_ATTRIBUTE_TYPE types[] = {CKA_CLASS, CKA_KEY_TYPE, *usage};
    reads = readAttributes(key, types);
  } catch (const Error& error) {
    if (error.rv() == CKR_OBJECT_HANDLE_INVALID) {
      fail(CKR_KEY_HANDLE_INVALID, keyName + " does not exist");
    }
    throw;
  }
  const std::optional<CK_ULONG> objectClass = ulongOf(reads[0]);
  const std::optional<CK_ULONG> keyType = ulongOf(reads[1]);
  if (!objectClass || !keyType ||
      (*objectClass != CKO_PRIVATE_KEY && *objectClass != CKO_PUBLIC_KEY && *objectClass != CKO_SECRET_KEY)) {
    fail(CKR_KEY_HANDLE_INVALID, keyName + " is not a key");
  }

  CK_MECHANISM_INFO info{};
  module().check("C_GetMechanismInfo", &CK_FUNCTION_LIST::C_GetMechanismInfo, m_slot, mechanism.type, &info);
  if ((info.flags & mechanismFlag(kind)) == 0) {
    fail(CKR_MECHANISM_INVALID,
         "mechanism " + std::to_string(mechanism.type) + " cannot " + operationName(kind) + " on this token");
  }

  if (const auto refusal =
          refuseKeyUse(kind, requiredKeyType(mechanism.type), {*objectClass, *keyType, trueOf(reads[2])})) {
    fail(refusal->rv, keyName + ": " + refusal->reason + " (" + operationName(kind) + ", mechanism " +
                          std::to_string(mechanism.type) + ")");
  }
  if (kind == OperationKind::Decrypt && mechanism.params.kind != token::MechanismParameters::Kind::None) {
    // Which OAEP parameters a token accepts only its own C_DecryptInit knows (SoftHSM takes
    // SHA-1 alone), so the real init runs now and the decryption that follows picks it up.
    abandonPrimed();
    try {
      startOperation(kind, mechanism, key);
    } catch (const Error& error) {
      if (error.rv() == CKR_ARGUMENTS_BAD) {
        fail(CKR_MECHANISM_PARAM_INVALID, std::string("the token refuses these parameters: ") + error.what());
      }
      throw;
    }
    m_primed = KeyOperation{kind, mechanism, key};
  }
}

void VendorSession::startOperation(OperationKind kind, const token::Mechanism& mechanism,
                                   token::ObjectId key) {
  CkMechanism ckMechanism(mechanism);
  const CK_SESSION_HANDLE session = m_session.handle();
  switch (kind) {
    case OperationKind::Sign:
      module().check("C_SignInit", &CK_FUNCTION_LIST::C_SignInit, session, ckMechanism.get(),
                     CK_OBJECT_HANDLE{key});
      return;
    case OperationKind::Verify:
      module().check("C_VerifyInit", &CK_FUNCTION_LIST::C_VerifyInit, session, ckMechanism.get(),
                     CK_OBJECT_HANDLE{key});
      return;
    case OperationKind::Decrypt:
      module().check("C_DecryptInit", &CK_FUNCTION_LIST::C_DecryptInit, session, ckMechanism.get(),
                     CK_OBJECT_HANDLE{key});
      return;
    case OperationKind::Digest:
      break;
  }
  fail(CKR_ARGUMENTS_BAD, std::string("no key operation to ") + operationName(kind));
}

bool VendorSession::takePrimed(OperationKind kind, const token::Mechanism& mechanism,
                               token::ObjectId key) {
  if (!m_primed) {
    return false;
  }
  if (m_primed->kind == kind && m_primed->key == key && sameMechanism(m_primed->mechanism, mechanism)) {
    m_primed.reset();
    return true;
  }
  abandonPrimed();
  return false;
}

void VendorSession::abandonPrimed() noexcept {
  if (!m_primed) {
    return;
  }
  // A single-part call with a real output buffer always ends the operation, whatever it
  // returns (except CKR_BUFFER_TOO_SMALL, which a 16 KiB buffer rules out).
  try {
    token::Bytes scratch(16384);
    CK_ULONG length = static_cast<CK_ULONG>(scratch.size());
    const CK_SESSION_HANDLE session = m_session.handle();
    switch (m_primed->kind) {
      case OperationKind::Sign:
        module().call(&CK_FUNCTION_LIST::C_Sign, session, input({}), CK_ULONG{0}, scratch.data(), &length);
        break;
      case OperationKind::Decrypt:
        module().call(&CK_FUNCTION_LIST::C_Decrypt, session, input({}), CK_ULONG{0}, scratch.data(), &length);
        break;
      case OperationKind::Verify:
        module().call(&CK_FUNCTION_LIST::C_Verify, session, input({}), CK_ULONG{0}, scratch.data(), length);
        break;
      case OperationKind::Digest:  // never primed: checkKeyOperation refuses it
        break;
    }
  } catch (...) {  // allocation failure: nothing more we can do
  }
  m_primed.reset();
}

void VendorSession::beginOperation(OperationKind kind, const token::Mechanism& mechanism, token::ObjectId key,
                                   const token::ContextLogin& context) {
  if (!takePrimed(kind, mechanism, key)) {
    startOperation(kind, mechanism, key);
  }
  if (!context.given) {
    return;
  }
  const CK_RV rv = module().call(&CK_FUNCTION_LIST::C_Login, m_session.handle(), CK_USER_TYPE{CKU_CONTEXT_SPECIFIC},
                                 pinPointer(context.pin), pinLength(context.pin));
  if (rv != CKR_OK) {
    m_primed = KeyOperation{kind, mechanism, key};
    abandonPrimed();  // the started operation must not wait for a later call
    throwCkRv(rv, "C_Login(CKU_CONTEXT_SPECIFIC)");
  }
}

token::Bytes VendorSession::sign(const token::Mechanism& mechanism, token::ObjectId key,
                                 std::span<const std::uint8_t> data, const token::ContextLogin& context) {
  beginOperation(OperationKind::Sign, mechanism, key, context);
  const CK_SESSION_HANDLE session = m_session.handle();
  return sizedOutput("C_Sign", [&](CK_BYTE_PTR out, CK_ULONG_PTR length) {
    return module().call(&CK_FUNCTION_LIST::C_Sign, session, input(data), static_cast<CK_ULONG>(data.size()),
                         out, length);
  });
}

void VendorSession::verify(const token::Mechanism& mechanism, token::ObjectId key,
                           std::span<const std::uint8_t> data, std::span<const std::uint8_t> signature) {
  if (!takePrimed(OperationKind::Verify, mechanism, key)) {
    startOperation(OperationKind::Verify, mechanism, key);
  }
  module().check("C_Verify", &CK_FUNCTION_LIST::C_Verify, m_session.handle(), input(data),
                 static_cast<CK_ULONG>(data.size()), input(signature), static_cast<CK_ULONG>(signature.size()));
}

token::Bytes VendorSession::decrypt(const token::Mechanism& mechanism, token::ObjectId key,
                                    std::span<const std::uint8_t> data, const token::ContextLogin& context) {
  beginOperation(OperationKind::Decrypt, mechanism, key, context);
  const CK_SESSION_HANDLE session = m_session.handle();
  return sizedOutput("C_Decrypt", [&](CK_BYTE_PTR out, CK_ULONG_PTR length) {
    return module().call(&CK_FUNCTION_LIST::C_Decrypt, session, input(data),
                         static_cast<CK_ULONG>(data.size()), out, length);
  });
}

token::Bytes VendorSession::digest(const token::Mechanism& mechanism, std::span<const std::uint8_t> data) {
  abandonPrimed();
  CkMechanism ckMechanism(mechanism);
  const CK_SESSION_HANDLE session = m_session.handle();
  module().check("C_DigestInit", &CK_FUNCTION_LIST::C_DigestInit, session, ckMechanism.get());
  return sizedOutput("C_Digest", [&](CK_BYTE_PTR out, CK_ULONG_PTR length) {
    return module().call(&CK_FUNCTION_LIST::C_Digest, session, input(data), static_cast<CK_ULONG>(data.size()),
                         out, length);
  });
}

token::Bytes VendorSession::generateRandom(std::size_t length) {
  token::Bytes random(length);
  if (length > 0) {
    module().check("C_GenerateRandom", &CK_FUNCTION_LIST::C_GenerateRandom, m_session.handle(), random.data(),
                   static_cast<CK_ULONG>(length));
  }
  return random;
}

void VendorSession::initPin(const SecureBytes& pin) {
  module().check("C_InitPIN", &CK_FUNCTION_LIST::C_InitPIN, m_session.handle(), pinPointer(&pin),
                 pinLength(&pin));
}

void VendorSession::setPin(const SecureBytes& oldPin, const SecureBytes& newPin) {
  module().check("C_SetPIN", &CK_FUNCTION_LIST::C_SetPIN, m_session.handle(), pinPointer(&oldPin),
                 pinLength(&oldPin), pinPointer(&newPin), pinLength(&newPin));
}

}  // namespace dojang::vendor
