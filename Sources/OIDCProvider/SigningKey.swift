import Crypto
import CryptoExtras
import Foundation

/// One RS256 signing key with its key ID, able to sign compact JWS and publish itself as a JWK.
public struct SigningKey: Sendable {
    /// The key ID: the decimal text of a random non-zero 64-bit number, as the Go tsidp uses.
    public let kid: String
    let privateKey: _RSA.Signing.PrivateKey
    /// The base64url JOSE header, computed once.
    let encodedHeader: String
    /// The public key as a JWK object.
    public let jwk: [String: String]

    public init(kid: String, privateKey: _RSA.Signing.PrivateKey) throws {
        self.kid = kid
        self.privateKey = privateKey
        let header = "{\"alg\":\"RS256\",\"kid\":\(JSONText.quote(kid)),\"typ\":\"JWT\"}"
        self.encodedHeader = Base64URL.encode(Data(header.utf8))
        let primitives = try privateKey.publicKey.getKeyPrimitives()
        self.jwk = [
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": Base64URL.encode(primitives.modulus), "e": Base64URL.encode(primitives.publicExponent),
        ]
    }

    /// A fresh RSA-2048 key with a random key ID.
    public static func generate() throws -> SigningKey {
        var id: UInt64 = 0
        while id == 0 { id = UInt64.random(in: 1...UInt64.max) }
        return try SigningKey(kid: String(id), privateKey: _RSA.Signing.PrivateKey(keySize: .bits2048))
    }

    /// The compact JWS `header.payload.signature` of `payload` (JSON text).
    public func sign(payload: String) throws -> String {
        let signingInput = encodedHeader + "." + Base64URL.encode(Data(payload.utf8))
        let signature = try privateKey.signature(for: Data(signingInput.utf8), padding: .insecurePKCS1v1_5)
        return signingInput + "." + Base64URL.encode(signature.rawRepresentation)
    }

    /// Whether `token` is a JWS this key signed (used for `id_token_hint`).
    public func verify(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == encodedHeader[...], let signature = Base64URL.decode(parts[2]) else {
            return false
        }
        let input = Data((parts[0] + "." + parts[1]).utf8)
        return privateKey.publicKey.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: signature), for: input, padding: .insecurePKCS1v1_5)
    }

    /// PKCS#1 PEM of the private key (`RSA PRIVATE KEY`), the Go tsidp's format.
    public var pkcs1PEM: String { privateKey.pemRepresentation }
}
