import AnyJSON
import Crypto
import CryptoExtras
import Foundation

/// JWS algorithms tsidp signs with.
public enum SigningAlgorithm: String, Sendable, Codable, CaseIterable {
    case rs256 = "RS256"
    case es256 = "ES256"
    case edDSA = "EdDSA"
}

/// One signing key with its key ID: signs compact JWS and publishes itself as a JWK.
public struct SigningKey: Sendable {
    enum Material: Sendable {
        case rsa(_RSA.Signing.PrivateKey, SystemRSASigner?)
        case p256(P256.Signing.PrivateKey)
        case ed25519(Curve25519.Signing.PrivateKey)
    }

    /// The key ID. RS256 keys use the decimal text of a random non-zero 64-bit number, as the Go
    /// tsidp does; other keys use the same form.
    public let kid: String
    public let algorithm: SigningAlgorithm
    let material: Material
    /// The public key as a JWK, in a stable member order.
    public let jwk: [(String, JSONValue)]
    /// The base64url JOSE headers for ID tokens (`typ: JWT`) and JWT access tokens (`typ: at+jwt`).
    let idTokenHeader: String
    let accessTokenHeader: String

    init(kid: String, material: Material) throws {
        self.kid = kid
        self.material = material
        switch material {
        case .rsa(let key, _):
            algorithm = .rs256
            let primitives = try key.publicKey.getKeyPrimitives()
            jwk = [
                ("kty", .string("RSA")), ("alg", .string("RS256")), ("use", .string("sig")), ("kid", .string(kid)),
                ("n", .string(Base64URL.encode(primitives.modulus))),
                ("e", .string(Base64URL.encode(primitives.publicExponent))),
            ]
        case .p256(let key):
            algorithm = .es256
            let point = Array(key.publicKey.x963Representation)
            jwk = [
                ("kty", .string("EC")), ("alg", .string("ES256")), ("use", .string("sig")), ("kid", .string(kid)),
                ("crv", .string("P-256")), ("x", .string(Base64URL.encode(point[1...32]))),
                ("y", .string(Base64URL.encode(point[33...64]))),
            ]
        case .ed25519(let key):
            algorithm = .edDSA
            jwk = [
                ("kty", .string("OKP")), ("alg", .string("EdDSA")), ("use", .string("sig")), ("kid", .string(kid)),
                ("crv", .string("Ed25519")), ("x", .string(Base64URL.encode(key.publicKey.rawRepresentation))),
            ]
        }
        idTokenHeader = Self.header(algorithm: algorithm, kid: kid, type: "JWT")
        accessTokenHeader = Self.header(algorithm: algorithm, kid: kid, type: "at+jwt")
    }

    private static func header(algorithm: SigningAlgorithm, kid: String, type: String) -> String {
        Base64URL.encode(
            Data("{\"alg\":\"\(algorithm.rawValue)\",\"kid\":\(JSONText.quote(kid)),\"typ\":\"\(type)\"}".utf8))
    }

    /// An RS256 key from an RSA private key (the Go tsidp's key file).
    public init(kid: String, rsa: _RSA.Signing.PrivateKey) throws {
        try self.init(kid: kid, material: .rsa(rsa, SystemRSASigner(pem: rsa.pemRepresentation)))
    }

    /// A fresh key of `algorithm` with a random key ID.
    public static func generate(_ algorithm: SigningAlgorithm = .rs256) throws -> SigningKey {
        var id: UInt64 = 0
        while id == 0 { id = UInt64.random(in: 1...UInt64.max) }
        switch algorithm {
        case .rs256: return try SigningKey(kid: String(id), rsa: _RSA.Signing.PrivateKey(keySize: .bits2048))
        case .es256: return try SigningKey(kid: String(id), material: .p256(P256.Signing.PrivateKey()))
        case .edDSA: return try SigningKey(kid: String(id), material: .ed25519(Curve25519.Signing.PrivateKey()))
        }
    }

    /// The compact JWS `header.payload.signature` of `payload` (JSON text) as an ID token.
    public func sign(payload: String) throws -> String {
        try sign(payload: payload, header: idTokenHeader)
    }

    /// The compact JWS of `payload` as an RFC 9068 access token (`typ: at+jwt`).
    public func signAccessToken(payload: String) throws -> String {
        try sign(payload: payload, header: accessTokenHeader)
    }

    private func sign(payload: String, header: String) throws -> String {
        let signingInput = header + "." + Base64URL.encode(Data(payload.utf8))
        let data = Data(signingInput.utf8)
        let signature: Data
        switch material {
        case .rsa(let key, let system):
            if let system, let bytes = system.sign(Array(signingInput.utf8)) {
                signature = Data(bytes)
            } else {
                signature = try key.signature(for: data, padding: .insecurePKCS1v1_5).rawRepresentation
            }
        case .p256(let key): signature = try key.signature(for: data).rawRepresentation
        case .ed25519(let key): signature = try key.signature(for: data)
        }
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// Whether `token` is a JWS this key signed (used for `id_token_hint` and token exchange).
    public func verify(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == idTokenHeader[...] || parts[0] == accessTokenHeader[...],
            let signature = Base64URL.decode(parts[2])
        else { return false }
        let input = Data((parts[0] + "." + parts[1]).utf8)
        switch material {
        case .rsa(let key, _):
            return key.publicKey.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature), for: input, padding: .insecurePKCS1v1_5)
        case .p256(let key):
            guard let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.publicKey.isValidSignature(parsed, for: input)
        case .ed25519(let key):
            return key.publicKey.isValidSignature(signature, for: input)
        }
    }

    /// The same signature computed by swift-crypto alone (tests compare it with the system path).
    func signWithSwiftCrypto(payload: String) throws -> String? {
        guard case .rsa(let key, _) = material else { return nil }
        let signingInput = idTokenHeader + "." + Base64URL.encode(Data(payload.utf8))
        let signature = try key.signature(for: Data(signingInput.utf8), padding: .insecurePKCS1v1_5)
        return signingInput + "." + Base64URL.encode(signature.rawRepresentation)
    }

    /// Whether this key signs through the system's libcrypto.
    var usesSystemCrypto: Bool {
        if case .rsa(_, let system) = material { return system != nil }
        return false
    }

    /// PKCS#1 PEM of an RSA key (`RSA PRIVATE KEY`), the Go tsidp's format; `nil` for other keys.
    public var pkcs1PEM: String? {
        if case .rsa(let key, _) = material { return key.pemRepresentation }
        return nil
    }

    /// The private key in a storable text form (PEM, or base64 raw bytes for Ed25519).
    var privateText: String {
        switch material {
        case .rsa(let key, _): return key.pemRepresentation
        case .p256(let key): return key.pemRepresentation
        case .ed25519(let key): return key.rawRepresentation.base64EncodedString()
        }
    }

    init(kid: String, algorithm: SigningAlgorithm, privateText: String) throws {
        switch algorithm {
        case .rs256: try self.init(kid: kid, rsa: _RSA.Signing.PrivateKey(pemRepresentation: privateText))
        case .es256: try self.init(kid: kid, material: .p256(P256.Signing.PrivateKey(pemRepresentation: privateText)))
        case .edDSA:
            guard let raw = Data(base64Encoded: privateText) else { throw KeyFileError("an Ed25519 key is not base64") }
            try self.init(kid: kid, material: .ed25519(Curve25519.Signing.PrivateKey(rawRepresentation: raw)))
        }
    }
}
