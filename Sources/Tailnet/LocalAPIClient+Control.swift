import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The LocalAPI calls that bring a node up and publish it: `start`, `prefs`,
/// `login-interactive`, `logout`, `watch-ipn-bus` and `serve-config` (wire document §4.3, §5).
extension LocalAPIClient {
    /// One answer: status, the headers tsidp reads, and the body.
    public struct Answer: Sendable {
        public var status: Int
        public var etag: String?
        public var body: Data
    }

    /// Sends one request and collects the answer, whatever its status.
    func send(
        _ method: HTTPMethod, _ pathAndQuery: String, body: Data? = nil, headers extra: [(String, String)] = []
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: url(pathAndQuery))
        request.method = method
        addStandardHeaders(&request)
        for (name, value) in extra { request.headers.replaceOrAdd(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let path = String(pathAndQuery.split(separator: "?", maxSplits: 1).first ?? "")
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: timeout)
        } catch {
            logger?.debug("LocalAPI call failed", metadata: ["path": "\(path)", "error": "\(error)"])
            throw LocalAPIError.transport("\(socketPath): \(error)")
        }
        logger?.debug("LocalAPI call", metadata: ["path": "\(path)", "status": "\(response.status.code)"])
        let collected: ByteBuffer
        do {
            collected = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch {
            throw LocalAPIError.malformedResponse("answer too large or cut short")
        }
        return Answer(
            status: Int(response.status.code), etag: response.headers.first(name: "Etag"),
            body: Data(collected.readableBytesView))
    }

    /// Fails with the LocalAPI's own words unless the answer's status is one of `accepted`.
    static func check(_ answer: Answer, accepted: Set<Int>) throws -> Data {
        if accepted.contains(answer.status) { return answer.body }
        switch answer.status {
        case 403: throw LocalAPIError.accessDenied(errorMessage(answer.body))
        default: throw LocalAPIError.http(status: answer.status, message: errorMessage(answer.body))
        }
    }

    /// `POST /localapi/v0/start`: starts the backend with `options` (prefs and an optional auth
    /// key). tailscaled answers at once; the login itself is reported on the IPN bus.
    public func start(_ options: StartOptions) async throws {
        let body = try JSONEncoder().encode(options)
        _ = try Self.check(try await send(.POST, "/localapi/v0/start", body: body), accepted: [200, 204])
    }

    /// `GET /localapi/v0/prefs`: the node's preferences.
    public func prefs() async throws -> Prefs {
        let body = try Self.check(try await send(.GET, "/localapi/v0/prefs"), accepted: [200])
        return try Self.decode(Prefs.self, from: body, what: "prefs")
    }

    /// `POST /localapi/v0/login-interactive`: asks for an interactive login URL (sent on the bus).
    public func loginInteractive() async throws {
        _ = try Self.check(try await send(.POST, "/localapi/v0/login-interactive"), accepted: [200, 204])
    }

    /// `POST /localapi/v0/logout`: forgets the node's login.
    public func logout() async throws {
        _ = try Self.check(try await send(.POST, "/localapi/v0/logout"), accepted: [200, 204])
    }

    /// `GET /localapi/v0/serve-config`: the serve configuration as JSON (`null` when there is
    /// none) and its ETag.
    public func serveConfig() async throws -> (config: ServeConfig, etag: String) {
        let answer = try await send(.GET, "/localapi/v0/serve-config")
        let body = try Self.check(answer, accepted: [200])
        let config = try Self.decode(ServeConfig.self, from: body, what: "serve-config")
        return (config, answer.etag ?? "")
    }

    /// `POST /localapi/v0/serve-config` with `If-Match: etag`.
    ///
    /// - Throws: ``LocalAPIError/preconditionFailed`` when someone changed the config since it
    ///   was read (412).
    public func setServeConfig(_ config: ServeConfig, ifMatch etag: String) async throws {
        let body = try JSONEncoder().encode(config)
        let answer = try await send(.POST, "/localapi/v0/serve-config", body: body, headers: [("If-Match", etag)])
        if answer.status == 412 { throw LocalAPIError.preconditionFailed(Self.errorMessage(answer.body)) }
        _ = try Self.check(answer, accepted: [200, 204])
    }

    /// `GET /localapi/v0/watch-ipn-bus?mask=N`: the bus's notifications, one at a time, for as
    /// long as the caller reads them. Ending the iteration (or cancelling the task) closes the
    /// stream; tailscaled then forgets the session and every foreground serve config tied to it.
    public func watchIPNBus(mask: Int) async throws -> IPNBusStream {
        var request = HTTPClientRequest(url: url("/localapi/v0/watch-ipn-bus?mask=\(mask)"))
        request.method = .GET
        addStandardHeaders(&request)
        let response: HTTPClientResponse
        do {
            // The stream lasts as long as tsidp runs; cancellation, not a deadline, ends it.
            response = try await httpClient.execute(request, timeout: .hours(24 * 365))
        } catch {
            throw LocalAPIError.transport("\(socketPath): \(error)")
        }
        guard response.status.code == 200 else {
            let body = (try? await response.body.collect(upTo: 64 * 1024)).map { Data($0.readableBytesView) } ?? Data()
            _ = try Self.check(Answer(status: Int(response.status.code), etag: nil, body: body), accepted: [200])
            throw LocalAPIError.malformedResponse("watch-ipn-bus")
        }
        return IPNBusStream(body: response.body)
    }

    func url(_ pathAndQuery: String) -> String {
        let encodedSocket = socketPath.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? socketPath
        return "http+unix://\(encodedSocket)\(pathAndQuery)"
    }

    func addStandardHeaders(_ request: inout HTTPClientRequest) {
        request.headers.replaceOrAdd(name: "Host", value: Self.hostHeader)
        request.headers.replaceOrAdd(name: "Tailscale-Cap", value: Self.capabilityVersion)
    }
}

/// The notifications of one `watch-ipn-bus` stream, split at newlines and decoded.
public struct IPNBusStream: AsyncSequence, Sendable {
    public typealias Element = IPNNotify
    let body: HTTPClientResponse.Body
    /// A single notification larger than this ends the stream with an error (a netmap is a few
    /// hundred KiB on a large tailnet; tsidp never asks for one).
    static let maxLine = 8 << 20

    public struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: HTTPClientResponse.Body.AsyncIterator
        var buffer: [UInt8] = []

        public mutating func next() async throws -> IPNNotify? {
            while true {
                if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = buffer[..<newline]
                    buffer.removeSubrange(...newline)
                    if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
                    do {
                        return try JSONDecoder().decode(IPNNotify.self, from: Data(line))
                    } catch {
                        throw LocalAPIError.malformedResponse("watch-ipn-bus: \(LocalAPIClient.describe(error))")
                    }
                }
                guard let chunk = try await chunks.next() else {
                    return nil
                }
                buffer.append(contentsOf: chunk.readableBytesView)
                if buffer.count > IPNBusStream.maxLine {
                    throw LocalAPIError.malformedResponse("watch-ipn-bus: a notification larger than 8 MiB")
                }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: body.makeAsyncIterator())
    }
}
