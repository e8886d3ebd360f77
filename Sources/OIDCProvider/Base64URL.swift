import Foundation

/// Base64url without padding (RFC 4648 §5), as JOSE and PKCE use it.
public enum Base64URL {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var text = Data(bytes).base64EncodedString()
        text = text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    /// Decodes base64url with or without padding; `nil` on any character outside the alphabet.
    public static func decode(_ text: some StringProtocol) -> Data? {
        var base = String(text).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base.contains("="), base.utf8.count % 4 != 1 else {
            let trimmed = String(text)
            if trimmed.hasSuffix("=") { return Data(base64Encoded: base) }
            return nil
        }
        while base.utf8.count % 4 != 0 { base += "=" }
        return Data(base64Encoded: base)
    }
}

/// Random identifiers and secrets.
public enum RandomToken {
    /// `byteCount` random bytes from the system CSPRNG, base64url-encoded.
    public static func make(bytes byteCount: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<byteCount).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Base64URL.encode(bytes)
    }

    /// `byteCount` random bytes as lowercase hex, the Go tsidp's format for client IDs and secrets.
    public static func hex(bytes byteCount: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<byteCount).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }
            .joined()
    }
}
