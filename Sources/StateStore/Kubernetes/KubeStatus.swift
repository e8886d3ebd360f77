import Foundation

/// A Kubernetes `Status` object (meta/v1), the body of every error answer of the API server.
///
/// Callers branch on ``code`` (the body's, not the HTTP status line) and keep ``message`` for the
/// operator: it says what the server refused and why.
public struct KubeStatus: Codable, Sendable, Equatable {
    /// `Failure` for errors.
    public var status: String?
    /// The server's explanation, e.g. `secrets "tsidp" not found`.
    public var message: String?
    /// A machine-readable reason such as `NotFound`, `AlreadyExists`, `Conflict`, `Forbidden`.
    public var reason: String?
    /// The HTTP status code the server meant.
    public var code: Int

    public init(status: String? = "Failure", message: String?, reason: String? = nil, code: Int) {
        self.status = status
        self.message = message
        self.reason = reason
        self.code = code
    }

    private enum CodingKeys: String, CodingKey {
        case kind, apiVersion, status, message, reason, code
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        status = try container.decodeIfPresent(String.self, forKey: .status)
        message = try container.decodeIfPresent(String.self, forKey: .message)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        code = try container.decodeIfPresent(Int.self, forKey: .code) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("Status", forKey: .kind)
        try container.encode("v1", forKey: .apiVersion)
        try container.encodeIfPresent(status, forKey: .status)
        try container.encodeIfPresent(message, forKey: .message)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encode(code, forKey: .code)
    }
}

extension KubeStatus {
    /// The Status of an error answer: the body decoded as a `Status`, or, for a body that is not
    /// one (a proxy's HTML page, an empty body), a Status carrying the HTTP status and the start of
    /// the body as its message.
    ///
    /// A body whose `code` is missing or zero takes the HTTP status.
    public static func decodeError(httpStatus: Int, body: [UInt8]) -> KubeStatus {
        if var status = try? JSONDecoder().decode(KubeStatus.self, from: Data(body)) {
            if status.code == 0 { status.code = httpStatus }
            return status
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return KubeStatus(
            message: text.isEmpty
                ? "HTTP status \(httpStatus) with no Status body" : "HTTP status \(httpStatus): \(text)",
            code: httpStatus)
    }
}
