import AsyncHTTPClient
import Foundation
import NIOCore
import OIDCProvider

/// Fetches the documents client metadata points at (`sector_identifier_uri`, `jwks_uri`): one
/// `GET`, no redirects followed, at most ``maximumBytes`` of body, answered within ten seconds.
enum ClientDocumentFetcher {
    /// The largest document read; a client's redirect URI list or key set is far smaller.
    static let maximumBytes = 64 * 1024

    /// A client of its own, so that redirects are never followed (a redirect could lead the
    /// fetch to a host the URI rules would have refused). It lives as long as the process.
    private static let client = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: .seconds(5), read: .seconds(10))))

    static let fetch: DocumentFetcher = { url in
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await client.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw FetchFailure(status: Int(response.status.code)) }
        let body = try await response.body.collect(upTo: maximumBytes)
        return Array(body.readableBytesView)
    }

    struct FetchFailure: Error {
        var status: Int
    }
}
