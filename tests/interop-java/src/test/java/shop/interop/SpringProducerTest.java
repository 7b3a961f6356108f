package shop.interop;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import com.fasterxml.jackson.databind.JsonNode;
import com.shop.inventory.InventoryEvents.ShortLine;
import com.shop.inventory.InventoryEvents.StockReservationFailedEvent;
import com.shop.order.event.Item;
import com.shop.order.event.OrderCancelledEvent;
import com.shop.order.event.OrderCreatedEvent;
import com.shop.order.event.OrderEvents;
import com.shop.payment.event.PaymentFailedEvent;
import com.shop.payment.event.PaymentSucceededEvent;
import org.junit.jupiter.api.Test;
import org.springframework.kafka.support.serializer.JsonSerializer;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static shop.interop.Interop.*;

/** Order and payment services built on Spring Kafka, sending with `JsonSerializer`. */
class SpringProducerTest {

    @Test
    void an_order_typed_only_by_its_class_name_is_reserved() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            // No eventId, no eventType: the type is in __TypeId__ = com.shop.order.event.OrderCreatedEvent.
            sendSpring(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 2))));
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
            assertEquals(order, reserved.text("orderId"));
            assertDoesNotThrow(() -> UUID.fromString(reserved.text("eventId")), "eventId is a UUID");
            JsonNode line = reserved.json().get("items").get(0);
            assertEquals(product, line.get("productId").asText());
            assertEquals(2, line.get("quantity").asInt());
        }
        JsonNode stock = stock(product);
        assertEquals(2, stock.get("reserved").asInt(), stock.toString());
        assertEquals(3, stock.get("available").asInt(), stock.toString());
    }

    @Test
    void a_numeric_order_id_comes_back_as_a_json_number() throws Exception {
        String product = unique("p");
        long order = uniqueNumber();
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), Long.toString(order),
                new com.shop.order.event.numeric.OrderCreatedEvent(order, List.of(new Item(product, 1))));
            Outcome reserved = outcome(outcomes, Long.toString(order));
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
            JsonNode orderId = reserved.json().get("orderId");
            assertTrue(orderId != null && orderId.isNumber(),
                "a Long order id must come back as a JSON number, not " + orderId);
            assertEquals(order, orderId.asLong());
        }
    }

    @Test
    void a_nested_class_type_id_is_understood() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            // __TypeId__: com.shop.order.event.OrderEvents$OrderCreatedEvent
            sendSpring(orderTopic(), order, new OrderEvents.OrderCreatedEvent(order, List.of(new Item(product, 1))));
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
        }
    }

    @Test
    void a_spring_type_alias_is_mapped_by_the_alias_setting() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        // What `spring.kafka.producer.properties.spring.json.type.mapping` does: __TypeId__: orderCreated.
        Map<String, Object> aliased = Map.of(JsonSerializer.TYPE_MAPPINGS, "orderCreated:" + OrderCreatedEvent.class.getName());
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 1))), Map.of(), aliased);
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
        }
    }

    @Test
    void any_event_id_is_the_cause_and_sending_it_again_changes_nothing() throws Exception {
        String product = unique("p");
        String order = unique("o");
        String eventId = unique("evt-42");
        seed(product, 5);
        OrderCreatedEvent event = new OrderCreatedEvent(order, List.of(new Item(product, 2)), eventId, null);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), order, event);
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
            assertEquals(eventId, reserved.text("causationId"), "causationId is the eventId exactly as sent");

            sendSpring(orderTopic(), order, event);
            outcomes.expectNone(order, Duration.ofSeconds(5), "the same eventId sent again must emit nothing");
        }
        assertEquals(2, stock(product).get("reserved").asInt(), "the second copy reserved nothing more");
    }

    @Test
    void a_cancel_after_the_reservation_releases_it() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            reserve(outcomes, order, product, 2);
            sendSpring(orderTopic(), order, new OrderCancelledEvent(order));
            Outcome released = outcome(outcomes, order);
            assertEquals("InventoryReleasedEvent", released.type(), released.json().toString());
            assertEquals("ORDER_CANCELLED", released.text("reason"));
            assertEquals(2, released.json().get("items").get(0).get("quantity").asInt(), released.json().toString());
        }
        JsonNode stock = stock(product);
        assertEquals(0, stock.get("reserved").asInt(), stock.toString());
        assertEquals(5, stock.get("available").asInt(), stock.toString());
    }

    @Test
    void a_failed_payment_releases_the_reservation() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            reserve(outcomes, order, product, 3);
            sendSpring(paymentTopic(), order, new PaymentFailedEvent(order, "card declined"));
            Outcome released = outcome(outcomes, order);
            assertEquals("InventoryReleasedEvent", released.type(), released.json().toString());
            assertEquals("PAYMENT_FAILED", released.text("reason"));
        }
        assertEquals(0, stock(product).get("reserved").asInt());
    }

    @Test
    void a_successful_payment_turns_the_reservation_into_a_deduction() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            reserve(outcomes, order, product, 2);
            sendSpring(paymentTopic(), order, new PaymentSucceededEvent(order));
            // It emits nothing: its effect is on the shelf.
            JsonNode stock = awaitStock(product, s -> s.get("quantity").asInt() == 3, "quantity 5 - 2 = 3");
            assertEquals(0, stock.get("reserved").asInt(), stock.toString());
            assertEquals(3, stock.get("available").asInt(), stock.toString());
            outcomes.expectNone(order, Duration.ofSeconds(2), "a successful payment emits no event");
        }
    }

    @Test
    void a_short_line_fails_the_whole_order_and_names_the_line() throws Exception {
        String plenty = unique("p");
        String scarce = unique("p");
        String order = unique("o");
        seed(plenty, 10);
        seed(scarce, 1);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), order,
                new OrderCreatedEvent(order, List.of(new Item(plenty, 2), new Item(scarce, 3))));
            Outcome outcome = outcome(outcomes, order);
            assertEquals("StockReservationFailedEvent", outcome.type(), outcome.json().toString());
            StockReservationFailedEvent failed = outcome.as(StockReservationFailedEvent.class);
            assertEquals("INSUFFICIENT_STOCK", failed.reason());
            assertEquals(order, failed.orderId());
            assertEquals(List.of(new ShortLine(scarce, 3, 1)), failed.items(), "only the short line, with what it lacked");
        }
        assertEquals(0, stock(plenty).get("reserved").asInt(), "all or nothing: the line in stock is not held");
    }

    @Test
    void trace_context_headers_come_back_on_the_answer() throws Exception {
        String product = unique("p");
        String order = unique("o");
        String traceparent = traceparent();
        String tracestate = "shop=" + unique("t");
        seed(product, 5);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 1))),
                Map.of("traceparent", traceparent, "tracestate", tracestate), Map.of());
            Outcome reserved = outcome(outcomes, order);
            assertEquals(traceparent, reserved.header("traceparent"));
            assertEquals(tracestate, reserved.header("tracestate"));
        }
    }

    /** Places an order and checks it is reserved: the first step of the release and payment stories. */
    private static void reserve(Reader<byte[]> outcomes, String order, String product, int quantity) throws Exception {
        sendSpring(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, quantity))));
        Outcome reserved = outcome(outcomes, order);
        assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
    }
}
