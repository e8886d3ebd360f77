import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// A client for tailscaled's LocalAPI over its unix socket.
///
/// Speaks HTTP/1.1 with `Host: local-tailscaled.sock` exactly and never sends `Origin` or
/// `Referer` (tailscaled refuses requests that carry them).
public struct LocalAPIClient: Sendable {
    /// Path of tailscaled's LocalAPI socket.
    public let socketPath: String
    /// How long one call may take before it fails.
    public var timeout: TimeAmount
    let httpClient: HTTPClient

    /// The capability version sent as `Tailscale-Cap`, informational only.
    static let capabilityVersion = "145"
    /// The only Host header tailscaled accepts on its socket.
    static let hostHeader = "local-tailscaled.sock"
    /// Upper bound of an answer's size; LocalAPI answers tsidp asks for are a few KiB.
    static let maxResponseBytes = 4 << 20

    /// Where each call is reported at debug level (`--debug-tailscaled`); `nil` reports nothing.
    public var logger: Logger?

    public init(
        socketPath: String, timeout: TimeAmount = .seconds(10), httpClient: HTTPClient = .shared, logger: Logger? = nil
    ) {
        self.socketPath = socketPath
        self.timeout = timeout
        self.httpClient = httpClient
        self.logger = logger
    }

    /// Who owns the device behind `address` (`IP:port` or `IP`).
    ///
    /// - Important: Any failure is an error; callers must treat it as "no identity" and never fall
    ///   back to a default user. A 404 becomes ``LocalAPIError/peerNotFound``.
    public func whoIs(address: String, proto: String = "tcp") async throws -> WhoIsResponse {
        let query = "addr=\(Self.escapeQueryValue(address))&proto=\(Self.escapeQueryValue(proto))"
        let body = try await get("/localapi/v0/whois?\(query)", notFoundIsPeerNotFound: true)
        return try Self.decode(WhoIsResponse.self, from: body, what: "whois")
    }

    /// tailscaled's own state and identity.
    public func status() async throws -> Status {
        let body = try await get("/localapi/v0/status?peers=false", notFoundIsPeerNotFound: false)
        return try Self.decode(Status.self, from: body, what: "status")
    }

    /// The TLS key and certificate tailscaled holds (or fetches) for `domain`.
    public func certPair(domain: String) async throws -> CertPair {
        let name = domain.hasSuffix(".") ? String(domain.dropLast()) : domain
        let escaped = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name
        let body = try await get(
            "/localapi/v0/cert/\(escaped)?type=pair&min_validity=0s", notFoundIsPeerNotFound: false)
        return try CertPair(pairBody: body)
    }

    func get(_ pathAndQuery: String, notFoundIsPeerNotFound: Bool) async throws -> Data {
        let encodedSocket = socketPath.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socketPath
        var request = HTTPClientRequest(url: "http+unix://\(encodedSocket)\(pathAndQuery)")
        request.method = .GET
        request.headers.replaceOrAdd(name: "Host", value: Self.hostHeader)
        request.headers.replaceOrAdd(name: "Tailscale-Cap", value: Self.capabilityVersion)
        let path = String(pathAndQuery.split(separator: "?", maxSplits: 1).first ?? "")
        let started = ContinuousClock.now
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: timeout)
        } catch {
            logger?.debug("LocalAPI call failed", metadata: ["path": "\(path)", "error": "\(error)"])
            throw LocalAPIError.transport("\(socketPath): \(error)")
        }
        logger?.debug(
            "LocalAPI call",
            metadata: [
                "path": "\(path)", "status": "\(response.status.code)",
                "elapsed": "\(ContinuousClock.now - started)",
            ])
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            throw LocalAPIError.malformedResponse("answer too large or cut short")
        }
        let data = Data(body.readableBytesView)
        switch response.status.code {
        case 200:
            return data
        case 404 where notFoundIsPeerNotFound:
            throw LocalAPIError.peerNotFound
        case 403:
            throw LocalAPIError.accessDenied(Self.errorMessage(data))
        default:
            throw LocalAPIError.http(status: Int(response.status.code), message: Self.errorMessage(data))
        }
    }

    /// Extracts a human message from a LocalAPI error body (`{"error": …}`, `{"Error": …}` or text).
    static func errorMessage(_ data: Data) -> String {
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let message = object["error"] as? String, !message.isEmpty { return message }
            if let message = object["Error"] as? String, !message.isEmpty { return message }
        }
        let text = String(decoding: data.prefix(512), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "(empty body)" : text
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw LocalAPIError.malformedResponse("\(what): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context), DecodingError.keyNotFound(_, let context),
            DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }

    static func escapeQueryValue(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}
