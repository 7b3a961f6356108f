package shop.interop;

import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import com.shop.inventory.InventoryEvents.InventoryAvailabilityEvent;
import com.shop.inventory.InventoryEvents.InventoryReleasedEvent;
import com.shop.inventory.InventoryEvents.InventoryReservedEvent;
import com.shop.inventory.InventoryEvents.LineItem;
import com.shop.inventory.InventoryEvents.ShortLine;
import com.shop.inventory.InventoryEvents.StockReservationFailedEvent;
import com.shop.order.event.Item;
import com.shop.order.event.OrderCancelledEvent;
import com.shop.order.event.OrderCreatedEvent;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.junit.jupiter.api.Test;
import org.springframework.kafka.support.serializer.JsonDeserializer;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static shop.interop.Interop.*;

/** Services that consume the inventory topic: Spring's standard type mapping, transactional readers. */
class ConsumerTest {

    @Test
    void a_spring_consumer_gets_each_event_as_its_own_record_by_the_standard_type_mapping() throws Exception {
        String product = unique("p");
        String taken = unique("o");
        String refused = unique("o");
        seed(product, 2);
        // Only what a Spring Boot service would put under spring.kafka.consumer.properties: no default type.
        Map<String, Object> spring = Map.of(
            ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, JsonDeserializer.class,
            JsonDeserializer.TRUSTED_PACKAGES, "com.shop.inventory",
            JsonDeserializer.TYPE_MAPPINGS,
            "InventoryReservedEvent:" + InventoryReservedEvent.class.getName()
                + ",StockReservationFailedEvent:" + StockReservationFailedEvent.class.getName()
                + ",InventoryReleasedEvent:" + InventoryReleasedEvent.class.getName()
                + ",InventoryLowStockEvent:" + InventoryAvailabilityEvent.class.getName()
                + ",InventoryOutOfStockEvent:" + InventoryAvailabilityEvent.class.getName()
                + ",InventoryBackInStockEvent:" + InventoryAvailabilityEvent.class.getName()
                + ",InventoryLowStockClearedEvent:" + InventoryAvailabilityEvent.class.getName());
        try (Reader<Object> events = new Reader<>(inventoryTopic(), spring)) {
            // One at a time, so which order gets the last units does not depend on partition timing.
            sendSpring(orderTopic(), taken, new OrderCreatedEvent(taken, List.of(new Item(product, 2))));
            InventoryReservedEvent reserved = assertInstanceOf(InventoryReservedEvent.class,
                events.next(taken, "the reservation of " + taken).value());
            assertEquals(List.of(new LineItem(product, 2)), reserved.items());
            assertEquals(taken, reserved.orderId());
            // The last units went: the product is out of stock (keyed by product, after its back-in-stock).
            InventoryAvailabilityEvent back = assertInstanceOf(InventoryAvailabilityEvent.class,
                events.next(product, "the back-in-stock of " + product).value());
            assertEquals("InventoryBackInStockEvent", back.eventType());
            InventoryAvailabilityEvent out = assertInstanceOf(InventoryAvailabilityEvent.class,
                events.next(product, "the out-of-stock of " + product).value());
            assertEquals("InventoryOutOfStockEvent", out.eventType());
            assertEquals(0, out.available());
            assertEquals("ORDER_RESERVED", out.cause());

            sendSpring(orderTopic(), refused, new OrderCreatedEvent(refused, List.of(new Item(product, 1))));
            StockReservationFailedEvent failed = assertInstanceOf(StockReservationFailedEvent.class,
                events.next(refused, "the refusal of " + refused).value());
            assertEquals("INSUFFICIENT_STOCK", failed.reason());
            assertEquals(List.of(new ShortLine(product, 1, 0)), failed.items());

            sendSpring(orderTopic(), taken, new OrderCancelledEvent(taken));
            InventoryReleasedEvent released = assertInstanceOf(InventoryReleasedEvent.class,
                events.next(taken, "the release of " + taken).value());
            assertEquals("ORDER_CANCELLED", released.reason());
            assertEquals(List.of(new LineItem(product, 2)), released.items());
        }
    }

    @Test
    void a_read_committed_consumer_sees_the_answers() throws Exception {
        String product = unique("p");
        String order = unique("o");
        seed(product, 1);
        try (Reader<byte[]> outcomes = read(inventoryTopic(), Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"))) {
            sendSpring(orderTopic(), order, new OrderCreatedEvent(order, List.of(new Item(product, 1))));
            Outcome reserved = outcome(outcomes, order);
            assertEquals("InventoryReservedEvent", reserved.type(), reserved.json().toString());
        }
    }

    @Test
    void every_answer_carries_its_type_for_spring_and_the_cloudevents_headers() throws Exception {
        String product = unique("p");
        String taken = unique("o");
        String refused = unique("o");
        seed(product, 1);
        try (Reader<byte[]> outcomes = read(inventoryTopic())) {
            sendSpring(orderTopic(), taken, new OrderCreatedEvent(taken, List.of(new Item(product, 1))));
            checkEnvelope(outcome(outcomes, taken), "InventoryReservedEvent");
            sendSpring(orderTopic(), refused, new OrderCreatedEvent(refused, List.of(new Item(product, 1))));
            checkEnvelope(outcome(outcomes, refused), "StockReservationFailedEvent");
            sendSpring(orderTopic(), taken, new OrderCancelledEvent(taken));
            checkEnvelope(outcome(outcomes, taken), "InventoryReleasedEvent");
        }
    }

    /** `outcome()` has already checked `__TypeId__` against `eventType`; this is the rest of the envelope. */
    private static void checkEnvelope(Outcome outcome, String type) {
        ConsumerRecord<String, byte[]> record = outcome.record();
        String body = outcome.json().toString();
        assertEquals(type, outcome.type(), body);
        assertEquals(type, outcome.header("__TypeId__"), body);
        assertDoesNotThrow(() -> UUID.fromString(outcome.text("eventId")), "eventId is a UUID: " + body);
        assertDoesNotThrow(() -> Instant.parse(outcome.text("occurredAt")), "occurredAt is an instant: " + body);
        assertEquals("1.0", outcome.header("ce_specversion"), type);
        assertEquals("application/json", outcome.header("content-type"), type);
        for (String name : List.of("ce_id", "ce_type", "ce_source", "ce_time")) {
            String value = header(record, name);
            assertFalse(value == null || value.isBlank(), type + " has no " + name + " header");
        }
    }
}
