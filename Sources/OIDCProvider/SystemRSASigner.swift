import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// RS256 signing through the system's OpenSSL `libcrypto`, loaded at run time when present.
///
/// RSA signing dominates the cost of a token response, and OpenSSL 3 signs RSA-2048 about twice as
/// fast as the BoringSSL build inside swift-crypto on common x86-64 machines. Nothing is needed at
/// build time: when `libcrypto` cannot be loaded, keys sign with swift-crypto, and RSA PKCS #1 v1.5
/// signatures are deterministic, so both produce the same bytes.
final class SystemRSASigner: @unchecked Sendable {
    private typealias BIONewMemBuf = @convention(c) (UnsafeRawPointer?, Int32) -> OpaquePointer?
    private typealias BIOFree = @convention(c) (OpaquePointer?) -> Int32
    private typealias PEMReadPrivateKey =
        @convention(c) (
            OpaquePointer?, UnsafeMutablePointer<OpaquePointer?>?, UnsafeRawPointer?, UnsafeMutableRawPointer?
        ) -> OpaquePointer?
    private typealias PKeyFree = @convention(c) (OpaquePointer?) -> Void
    private typealias MDCtxNew = @convention(c) () -> OpaquePointer?
    private typealias MDCtxFree = @convention(c) (OpaquePointer?) -> Void
    private typealias SHA256 = @convention(c) () -> OpaquePointer?
    private typealias DigestSignInit =
        @convention(c) (
            OpaquePointer?, UnsafeMutablePointer<OpaquePointer?>?, OpaquePointer?, OpaquePointer?, OpaquePointer?
        ) -> Int32
    private typealias DigestSign =
        @convention(c) (
            OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Int>?, UnsafePointer<UInt8>?, Int
        ) -> Int32

    /// The functions of a loaded `libcrypto`.
    private struct Library: @unchecked Sendable {
        let bioNewMemBuf: BIONewMemBuf
        let bioFree: BIOFree
        let pemReadPrivateKey: PEMReadPrivateKey
        let pkeyFree: PKeyFree
        let mdCtxNew: MDCtxNew
        let mdCtxFree: MDCtxFree
        let sha256: SHA256
        let digestSignInit: DigestSignInit
        let digestSign: DigestSign
    }

    private static let library: Library? = {
        if ProcessInfo.processInfo.environment["TSIDP_SYSTEM_CRYPTO"] == "0" { return nil }
        for name in ["libcrypto.so.3", "libcrypto.so"] {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            func symbol<T>(_ name: String, _: T.Type) -> T? {
                dlsym(handle, name).map { unsafeBitCast($0, to: T.self) }
            }
            guard let bioNewMemBuf = symbol("BIO_new_mem_buf", BIONewMemBuf.self),
                let bioFree = symbol("BIO_free", BIOFree.self),
                let pemReadPrivateKey = symbol("PEM_read_bio_PrivateKey", PEMReadPrivateKey.self),
                let pkeyFree = symbol("EVP_PKEY_free", PKeyFree.self),
                let mdCtxNew = symbol("EVP_MD_CTX_new", MDCtxNew.self),
                let mdCtxFree = symbol("EVP_MD_CTX_free", MDCtxFree.self),
                let sha256 = symbol("EVP_sha256", SHA256.self),
                let digestSignInit = symbol("EVP_DigestSignInit", DigestSignInit.self),
                let digestSign = symbol("EVP_DigestSign", DigestSign.self)
            else {
                dlclose(handle)
                continue
            }
            return Library(
                bioNewMemBuf: bioNewMemBuf, bioFree: bioFree, pemReadPrivateKey: pemReadPrivateKey, pkeyFree: pkeyFree,
                mdCtxNew: mdCtxNew, mdCtxFree: mdCtxFree, sha256: sha256, digestSignInit: digestSignInit,
                digestSign: digestSign)
        }
        return nil
    }()

    /// Whether the system `libcrypto` is in use.
    static var isAvailable: Bool { library != nil }

    private let library: Library
    private let key: OpaquePointer

    /// Loads a PEM private key into `libcrypto`; `nil` when the library or the key is unusable.
    init?(pem: String) {
        guard let library = Self.library else { return nil }
        let bytes = Array(pem.utf8)
        let key: OpaquePointer? = bytes.withUnsafeBytes { buffer in
            guard let bio = library.bioNewMemBuf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { _ = library.bioFree(bio) }
            return library.pemReadPrivateKey(bio, nil, nil, nil)
        }
        guard let key else { return nil }
        self.library = library
        self.key = key
    }

    deinit {
        library.pkeyFree(key)
    }

    /// The RSASSA-PKCS1-v1_5 SHA-256 signature of `data`, or `nil` if OpenSSL failed.
    func sign(_ data: [UInt8]) -> [UInt8]? {
        guard let context = library.mdCtxNew() else { return nil }
        defer { library.mdCtxFree(context) }
        guard library.digestSignInit(context, nil, library.sha256(), nil, key) == 1 else { return nil }
        var length = 0
        guard library.digestSign(context, nil, &length, data, data.count) == 1, length > 0 else { return nil }
        var signature = [UInt8](repeating: 0, count: length)
        let ok = signature.withUnsafeMutableBufferPointer { buffer in
            library.digestSign(context, buffer.baseAddress, &length, data, data.count)
        }
        guard ok == 1 else { return nil }
        return Array(signature.prefix(length))
    }
}
